"""The command lines: parsing ``key=value`` words, ``--help``, one-line errors and exit
codes, Ctrl-C and SIGTERM. Each command's work lives in the rooms beside this one."""
