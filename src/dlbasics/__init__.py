"""dlbasics: the classic first deep-learning exercises as config-driven experiments.

The package stays light to import: the nets live in :mod:`dlbasics.nets`, the datamodules
in :mod:`dlbasics.data`, the LightningModule in :mod:`dlbasics.module`, and the entry
point in :mod:`dlbasics.train`.
"""

__version__ = "0.1.0"
