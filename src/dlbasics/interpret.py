"""``python -m dlbasics.interpret run=<run dir>``: what the model gets wrong.

The command's name only; its code is :mod:`dlbasics.using.interpret`.
"""

if __name__ == "__main__":
    from dlbasics.using.interpret import cli

    cli()
