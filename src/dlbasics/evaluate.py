"""``python -m dlbasics.evaluate run=<run dir> [data=...]``: score a trained run.

The command's name only; its code is :mod:`dlbasics.using.evaluate`.
"""

if __name__ == "__main__":
    from dlbasics.using.evaluate import cli

    cli()
