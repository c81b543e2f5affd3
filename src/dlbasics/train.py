"""Train a model from the config tree: ``python -m dlbasics.train [group=option] [key=value]``.

The command's name only; its code is :mod:`dlbasics.cli.train`.
"""

if __name__ == "__main__":
    from dlbasics.cli.train import main

    main()
