"""``automtl spaces``: the ready-made search spaces."""

from __future__ import annotations

import click


@click.command()
def spaces() -> None:
    """List the ready-made search spaces (use their name with --space)."""
    import yaml

    from automtl.space import builtin_spaces

    for path in builtin_spaces():
        desc = " ".join(str((yaml.safe_load(path.read_text()) or {}).get("description", "")).split())
        click.echo(f"{path.stem:<18} {desc}")
