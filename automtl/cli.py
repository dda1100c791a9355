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


class _Workers(click.ParamType):
    """A positive number of worker processes, or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"expected a positive number or 'auto', got {value!r}", param, ctx)
        return number


WORKERS = _Workers()


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
@click.option("--backend", help="Search engine: optuna (default) or keras-tuner.")
@click.option("--algorithm", help="optuna: tpe (default), random or nsga2; keras-tuner: bayesian (default), random or hyperband.")
@click.option("--objective", type=click.Choice(["mean", "pareto"]),
              help="mean: one importance-weighted score; pareto: one objective per task (Pareto front).")
@click.option("--trials", type=click.IntRange(min=1), help="Finished trials the study should hold.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop starting trials after this many seconds.")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs per trial.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: runs/<experiment name>).")
@click.option("--study", help="Study name (default: the experiment name).")
@click.option("--storage", help="Optuna storage: sqlite:///FILE, postgresql://USER:PASS@HOST/DB, or a FILE.journal "
              "(default: study.db in the run folder; study.journal with --workers).")
@click.option("--seed", type=int, help="Seed for the sampler and the trials.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]),
              help="Train on: auto (a GPU when TensorFlow sees one; default), cpu, or gpu (an error without one).")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed"]),
              help="auto (default): mixed float16 on GPUs of compute capability >= 7.0, else float32.")
@click.option("--workers", type=WORKERS,
              help="N worker processes sharing the study (auto: one per GPU, 1 without GPUs).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
@click.option("--no-report", is_flag=True, help="Do not write RUN_DIR/report.html at the end.")
@user_errors
def search(config_path: Path | None, demo: str | None, quiet: bool, no_report: bool, **overrides: Any) -> None:
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
    _quiet_tensorflow()
    from automtl.search import run_search

    summary = run_search(exp, console=Console(), quiet=quiet, report=not no_report)
    if summary.interrupted:
        sys.exit(130)
    if summary.stopped:
        sys.exit(1)
    if summary.best is None and not summary.worker:
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


RUN_DIR = click.argument("run_dir", type=click.Path(path_type=Path))


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter off the console (imports it once, quietly)."""
    from automtl.tfimport import import_tensorflow_quietly

    import_tensorflow_quietly()


@cli.command()
@RUN_DIR
@click.option("--out", type=click.Path(path_type=Path), help="Where to write it (default: RUN_DIR/report.html).")
@user_errors
def report(run_dir: Path, out: Path | None) -> None:
    """Write a self-contained HTML report of a run (plots work offline)."""
    from automtl.report import write_report

    click.echo(f"report: {write_report(run_dir, out)}")


@cli.command()
@RUN_DIR
@click.option("--sort", "sort_by", default="score", show_default=True,
              help="score, a task name (its score) or a metric column such as price.rmse; best first.")
@click.option("--ascending/--descending", default=None, help="Override the sort direction.")
@click.option("--all", "include_all", is_flag=True, help="Include pruned and failed trials.")
@click.option("--top", type=click.IntRange(min=1), help="Show only the first N.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@user_errors
def trials(run_dir: Path, sort_by: str, ascending: bool | None, include_all: bool, top: int | None,
           as_json: bool) -> None:
    """The leaderboard of a run, sortable by the objective or any task's metric."""
    from automtl.commands import trials as view
    from automtl.results import read_trials
    from automtl.rundir import disk_use

    run = read_trials(run_dir)
    records = view.select(run, sort_by, ascending, include_all)[:top]
    if as_json:
        click.echo(view.as_json(run, records))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # files and pipes: room for every column rather than 80 characters
        console = Console(width=160)
    console.print(view.table(run, records, sort_by, show_state=include_all))
    console.print(f"disk: {disk_use(run_dir).describe()}", highlight=False)


@cli.command()
@RUN_DIR
@click.option("--trial", "number", type=int, required=True, help="Trial number (see `automtl trials`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write (replaced if present).")
@user_errors
def export(run_dir: Path, number: int, out: Path) -> None:
    """Export any completed trial of a run, in the same format as RUN_DIR/best."""
    from automtl.commands.export import export_run_trial, exportable

    exportable(run_dir, number)  # a bad trial number fails before TensorFlow starts
    _quiet_tensorflow()
    folder = export_run_trial(run_dir, number, out)
    click.echo(f"trial {number} exported to {folder}: saved_model/ (serving_default), model.keras, automtl.json")


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="CSV, Parquet, JSONL or NPZ file with the model's input columns/arrays.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output file (.csv, .parquet, .jsonl or .npz): one column per task output.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--keep", multiple=True, help="Copy this data column (an id) into the output; repeatable.")
@user_errors
def predict(model_dir: Path, data_path: Path, out: Path, batch_size: int, keep: tuple[str, ...]) -> None:
    """Run an exported model (RUN_DIR/best or an `export` folder) over a data file."""
    from rich.console import Console

    from automtl.predict import predict as run_predict

    _quiet_tensorflow()
    result = run_predict(model_dir, data_path, out, batch_size=batch_size, keep=keep, console=Console(stderr=True))
    click.echo(f"{result.rows} rows -> {result.out} ({', '.join(result.outputs)}) in {result.seconds:.1f}s")


@cli.command()
@RUN_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@user_errors
def dashboard(run_dir: Path, host: str, port: int) -> None:
    """Start optuna-dashboard on a run's study (needs the `dashboard` extra)."""
    from automtl.commands.dashboard import dashboard_storage, serve

    storage = dashboard_storage(run_dir)
    from automtl.backends.optuna_storage import redact

    click.echo(f"optuna-dashboard on {redact(storage)}: http://{host}:{port}/ (Ctrl-C to stop)")
    serve(storage, host, port)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
