"""``python -m moorage`` runs the ``moor`` command."""

from moorage.cli.main import main

main()
