"""``python -m llmasos`` is the ``llmasos`` command."""

from llmasos.cli.main import main

main()
