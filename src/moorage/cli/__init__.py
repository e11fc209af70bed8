"""The ``moor`` command line: Docker's names, flags, output and exit codes."""
