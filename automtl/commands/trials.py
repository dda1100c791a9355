"""``automtl trials RUN_DIR``: the leaderboard of a run."""

from __future__ import annotations

from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, user_errors


@click.command()
@RUN_DIR
@click.option("--sort", "sort_by", default="score", show_default=True,
              help="score, a task name (its score) or a metric column such as price.rmse; best first.")
@click.option("--ascending/--descending", default=None, help="Override the sort direction.")
@click.option("--all", "include_all", is_flag=True, help="Include pruned and failed trials.")
@click.option("--top", type=click.IntRange(min=1), help="Show only the first N.")
@click.option("--params", "every_param", is_flag=True,
              help="Show every parameter of each trial (default: the choices that define the model).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@user_errors
def trials(run_dir: Path, sort_by: str, ascending: bool | None, include_all: bool, top: int | None,
           every_param: bool, as_json: bool) -> None:
    """The leaderboard of a run, sortable by the objective or any task's metric."""
    from automtl.rundir import trials_view as view
    from automtl.rundir.folder import disk_use
    from automtl.rundir.results import read_trials

    run = read_trials(run_dir)
    records = view.select(run, sort_by, ascending, include_all)[:top]
    if as_json:
        click.echo(view.as_json(run, records))
        return
    from automtl.console import make_console, print_table

    console = make_console()  # files and pipes: every column whole, never wrapped at 80 characters
    print_table(console, view.table(run, records, sort_by, show_state=include_all, every_param=every_param),
                drop=view.DROP)
    for line in view.extras(run, str(run_dir)):
        console.print(line, highlight=False)
    console.print(f"disk: {disk_use(run_dir).describe()}", highlight=False)
