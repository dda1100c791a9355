"""The ``automtl`` command line: the Click group. One module per command in :mod:`automtl.commands`.

Every command module is light to import (click only); heavy imports happen
inside the command that needs them, so ``automtl --help`` answers at once.
"""

from __future__ import annotations

import click

from automtl import __version__
from automtl.tfimport import quiet_on_import
from automtl.commands.base import VERBOSE
from automtl.commands import dashboard, distill, export, k8s, plugins, predict, report, search, spaces, storage, trials


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="automtl")
@VERBOSE
def cli() -> None:
    """Search multi-task neural network architectures (TensorFlow/Keras) for your data."""
    quiet_on_import()  # TensorFlow, wherever a command first imports it, starts without its log lines


for _module in (search, plugins, spaces, report, trials, export, distill, predict, dashboard, storage, k8s):
    cli.add_command(getattr(_module, _module.__name__.rsplit(".", 1)[1]))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
