"""``python -m dlbasics.sweeps <multirun dir>``: the summary of a multirun or search.

The command's name only; its code is :mod:`dlbasics.search.sweeps`.
"""

if __name__ == "__main__":
    from dlbasics.search.sweeps import main

    main()
