"""``python -m dlbasics.lr_find [overrides]``: a learning-rate range test of a run's model.

The command's name; its code is :mod:`dlbasics.training.lr_find`. Importing this module makes
``dlbasics.lr_find`` the module, so the module calls :func:`~dlbasics.training.lr_find.lr_find`:
``dlbasics.lr_find("experiment=mlp_moons")`` works either way.
"""

import sys
import types

from dlbasics.training.lr_find import LrFinding, cli, lr_find

__all__ = ["LrFinding", "cli", "lr_find"]


class _CallableModule(types.ModuleType):
    def __call__(self, *overrides: str, **keywords) -> LrFinding:
        return lr_find(*overrides, **keywords)


if __name__ == "__main__":
    cli(sys.argv[1:])
else:
    sys.modules[__name__].__class__ = _CallableModule
