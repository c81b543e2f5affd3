"""``python -m dlbasics.manual``: the material's hand-derived computations.

The command's name only; its code is :mod:`dlbasics.course.manual`.
"""

if __name__ == "__main__":
    import sys

    from dlbasics.course.manual import main

    sys.exit(main(sys.argv[1:]))
