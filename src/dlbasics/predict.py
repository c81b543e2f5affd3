"""``python -m dlbasics.predict run=<run dir> input=rows.csv output=pred.csv``.

The command's name only; its code is :mod:`dlbasics.using.predict`.
"""

if __name__ == "__main__":
    from dlbasics.using.predict import cli

    cli()
