"""``python -m automtl``: the same command line as the ``automtl`` script."""

from automtl.cli import main

main()
