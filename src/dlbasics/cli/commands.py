"""The command line shared by ``evaluate``, ``predict`` and ``export``: ``key=value`` words.

These commands take a few named values (``run=``, ``ckpt=``, ...) rather than a Hydra
config tree; a mistake is one line and exit 2, ``--help`` prints the command's own help
without importing torch, and Ctrl-C ends with 130 and nothing half-written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from dlbasics.errors import ConfigError, DlbasicsError


def parse(
    argv: Sequence[str], keys: Sequence[str], command: str, passthrough: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """``key=value`` words -> ``({key: value}, [passed-through overrides])``.

    ``keys`` are the command's own; words under ``passthrough`` (``data.`` for evaluate)
    are returned as overrides; anything else is a ConfigError naming the word.
    """
    options: dict[str, str] = {}
    overrides: list[str] = []
    for word in argv:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"{command}: expected key=value, got {word!r} (see --help)")
        if key in keys:
            options[key] = value
        elif passthrough and key.startswith(passthrough):
            overrides.append(word)
        else:
            accepted = ", ".join(f"{k}=" for k in keys)
            extra = f" and {passthrough}* overrides" if passthrough else ""
            raise ConfigError(f"{command}: unknown key {key!r}; it accepts {accepted}{extra}")
    return options, overrides


def run(main: Callable[[list[str]], None], usage: str, argv: Sequence[str] | None = None) -> None:
    """Run a command's ``main`` on the command line: ``--help``, one-line errors, Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(usage.strip())
        return
    try:
        main(argv)
    except DlbasicsError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))  # 2: the input; 1: a check that failed
    except KeyboardInterrupt:
        print("Interrupted; nothing was written.", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # see dlbasics.training.train._exit_interrupted for why not sys.exit
