"""``automtl spaces``: the ready-made search spaces, and what ``auto`` builds."""

from __future__ import annotations

import click


@click.command()
def spaces() -> None:
    """List the ready-made search spaces (use their name with --space) and what `auto` picks."""
    import yaml

    from automtl.autospace import describe_types
    from automtl.space import builtin_spaces

    click.echo(f"{'auto':<14} (the default) built from the experiment's input and task types: trunk, heads, "
               "norm, dropout, learning rate, lr schedule, weight decay and batch size, plus per type:")
    for kind, name, desc in describe_types():
        click.echo(f"{'':<16}{kind} {name}: {desc}")
    for path in builtin_spaces():
        desc = " ".join(str((yaml.safe_load(path.read_text()) or {}).get("description", "")).split())
        click.echo(f"{path.stem:<14} {desc}")
