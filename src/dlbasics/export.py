"""``python -m dlbasics.export run=<run dir> format=onnx|pt2``: ship a trained model.

The command's name only; its code is :mod:`dlbasics.using.export`.
"""

if __name__ == "__main__":
    from dlbasics.using.export import cli

    cli()
