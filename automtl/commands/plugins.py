"""``automtl plugins``: the installed task and input types (no TensorFlow loaded)."""

from __future__ import annotations


import click



@click.command()
def plugins() -> None:
    """List installed task and input types, with the package each comes from."""
    from rich.console import Console
    from rich.table import Table

    from automtl.core.plugins import list_plugins

    table = Table(title="automtl plugins", title_justify="left")
    for col in ("kind", "type", "distribution", "version", "object"):
        table.add_column(col)
    for p in list_plugins():
        table.add_row(p.kind, p.name, p.distribution, p.version, p.target)
    Console().print(table)
