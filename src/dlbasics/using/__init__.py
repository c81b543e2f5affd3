"""A finished run put to use: loaded (:mod:`.saved_run`, :mod:`.run`), evaluated,
predicted with, exported, interpreted."""
