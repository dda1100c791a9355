"""The ``automtl`` command line. Commands stay thin; heavy imports happen inside them."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from automtl import __version__
from automtl.errors import AutomtlError

from automtl.data.demo import DEMOS

DEMO_NAMES = tuple(DEMOS)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input: one clear message on stderr, exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutomtlError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="automtl")
def cli() -> None:
    """Search multi-task neural network architectures (TensorFlow/Keras) for your data."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Experiment YAML file.")
@click.option("--demo", type=click.Choice(DEMO_NAMES), help="Run a built-in demo instead of --config.")
@click.option("--space", help="Search space: a YAML file or a built-in name (see `automtl spaces`).")
@click.option("--backend", help="Search engine: optuna.")
@click.option("--algorithm", help="Sampler: tpe (default) or random.")
@click.option("--trials", type=click.IntRange(min=1), help="Finished trials the study should hold.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop starting trials after this many seconds.")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs per trial.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: runs/<experiment name>).")
@click.option("--study", help="Study name (default: the experiment name).")
@click.option("--storage", help="Optuna storage URL (default: SQLite file in the run folder).")
@click.option("--seed", type=int, help="Seed for the sampler and the trials.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
@user_errors
def search(config_path: Path | None, demo: str | None, quiet: bool, **overrides: Any) -> None:
    """Run a search and export the best multi-task model.

    Options given here override the experiment file's `search` section.
    Running the same command again resumes the study.
    """
    from rich.console import Console

    from automtl.config import load_experiment
    from automtl.errors import ConfigError

    if (config_path is None) == (demo is None):
        raise ConfigError("give exactly one of --config FILE or --demo NAME (demos: " + ", ".join(DEMO_NAMES) + ")")
    if overrides.get("out") is not None:
        overrides["out"] = overrides["out"].resolve()
    if demo is not None:
        from automtl.data.demo import write_demo

        run_dir = overrides.get("out") or Path("runs", demo).resolve()
        overrides["out"] = run_dir
        config_path = write_demo(demo, run_dir / "data")
    exp = load_experiment(config_path, overrides)
    from automtl.search import run_search

    summary = run_search(exp, console=Console(), quiet=quiet)
    if summary.interrupted:
        sys.exit(130)
    if summary.best is None:
        sys.exit(1)


@cli.command()
def plugins() -> None:
    """List installed task and input types, with the package each comes from."""
    from rich.console import Console
    from rich.table import Table

    from automtl.plugins import list_plugins

    table = Table(title="automtl plugins", title_justify="left")
    for col in ("kind", "type", "distribution", "version", "object"):
        table.add_column(col)
    for p in list_plugins():
        table.add_row(p.kind, p.name, p.distribution, p.version, p.target)
    Console().print(table)


@cli.command()
def spaces() -> None:
    """List the ready-made search spaces (use their name with --space)."""
    import yaml

    from automtl.space import builtin_spaces

    for path in builtin_spaces():
        desc = " ".join(str((yaml.safe_load(path.read_text()) or {}).get("description", "")).split())
        click.echo(f"{path.stem:<14} {desc}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
