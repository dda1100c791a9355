"""``automtl search``: run a search and export the best multi-task model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from automtl.commands.base import VERBOSE, log_to, quiet_tensorflow, user_errors, writing_to
from automtl.core.plugins import demo_names
from automtl.core.registry import AXES, members


def _backends() -> dict:
    """The installed backends' declarations (light: their engines load only when a search starts)."""
    return members("backend")


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
#: In a demo's data folder: which demo wrote it.
DEMO_MARKER = ".automtl-demo"


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Experiment YAML file.")
@click.option("--demo", type=click.Choice(demo_names()), help="Run a built-in demo instead of --config.")
@click.option("--space", help="Search space: a YAML file or a built-in name (see `automtl spaces`) (default: the experiment's `space`, else auto).")
@click.option("--backend", help=f"Search engine: {' or '.join(_backends())} (default {AXES['backend'].default}).")
@click.option("--algorithm", help="; ".join(f"{name}: {', '.join(spec.algorithms)} (default {spec.default_algorithm})"
                                            for name, spec in _backends().items()))
@click.option("--objective", type=click.Choice(["mean", "pareto"]),
              help="mean (default): one importance-weighted score; pareto: one objective per task (Pareto front).")
@click.option("--latency-objective/--no-latency-objective", "latency_objective", default=None,
              help="With --objective pareto: each trial's serving latency (batch 1) is one more objective, minimised "
              "(default: off).")
@click.option("--trials", type=click.IntRange(min=1),
              help="Finished trials the study should hold (default 20; with --timeout: as many as fit).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Wall time of the whole command in seconds: trials, baselines, ensemble, refit and export. A "
                   "share is kept for what follows the trials; the running trial stops at its next epoch (default: "
                   "none, --trials decides).")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs per trial (default 30).")
@click.option("--pruner", type=click.Choice(sorted({p for spec in _backends().values() for p in spec.pruners})),
              help="Stop poor trials early: " + "; ".join(f"{name}: {', '.join(spec.pruners)} (default "
                                                          f"{spec.default_pruner('mean')})"
                                                          for name, spec in _backends().items()) + ".")
@click.option("--fidelity", type=click.Choice(["auto", "rows", "none"]),
              help="rows: new configurations train on 1/9 of the training rows, the best third of each rung moves "
              "up to 1/3 and then all rows; auto (default): rows under --timeout without --trials when a ninth "
              "of the training rows is at least 1,000; none: all rows for every trial.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: runs/<experiment name>).")
@click.option("--study", help="Study name (default: the experiment name).")
@click.option("--storage", envvar="AUTOMTL_STORAGE", show_envvar=True,
              help="Optuna storage: sqlite:///FILE, postgresql://USER:PASS@HOST/DB, a FILE.journal, or "
              "grpc://HOST:PORT (a proxy: `automtl storage serve`) (default: study.db in the run folder; "
              "study.journal with --workers).")
@click.option("--seed", type=int, help="Seed for the sampler and the trials (default 0).")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]),
              help="Train on: auto (a GPU when TensorFlow sees one; default), cpu, or gpu (an error without one).")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed"]),
              help="auto (default): mixed float16 on GPUs of compute capability >= 7.0, else float32.")
@click.option("--workers", type=WORKERS,
              help="N worker processes sharing the study (default 1; auto: one per GPU, 1 without GPUs).")
@click.option("--baselines", type=click.Choice(["auto", "search", "off"]),
              help="Single-task baselines: auto (default; each task retrained alone with the best trial's "
              "configuration), search (a single-task search per task) or off.")
@click.option("--baseline-trials", type=click.IntRange(min=1),
              help="Trials of each single-task search with --baselines search (default: --trials / tasks).")
@click.option("--ensemble", type=click.IntRange(min=0),
              help="Ensemble size K over the completed trials (default 5 when at least 2 completed; 0: off).")
@click.option("--refit/--no-refit", default=None,
              help="Retrain the best trial on training + validation rows before exporting best/ (default: on "
              "when the validation rows are split off the training file).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary (default: progress too).")
@click.option("--no-report", is_flag=True, help="Do not write RUN_DIR/report.html at the end (default: write it).")
@VERBOSE
@user_errors
def search(config_path: Path | None, demo: str | None, quiet: bool, no_report: bool, **overrides: Any) -> None:
    """Run a search and export the best multi-task model.

    Options given here override the experiment file's `search` section.
    Running the same command again resumes the study.
    """
    import time

    started = time.time()  # --timeout counts from here
    from automtl.config import load_experiment
    from automtl.console import make_console
    from automtl.errors import ConfigError

    if (config_path is None) == (demo is None):
        raise ConfigError("give exactly one of --config FILE or --demo NAME (demos: " + ", ".join(demo_names()) + ")")
    if overrides.get("out") is not None:
        overrides["out"] = overrides["out"].expanduser().resolve()
    if demo is not None:
        run_dir = overrides.get("out") or Path("runs", demo).resolve()
        overrides["out"] = run_dir
        config_path = demo_files(demo, run_dir)
    exp = load_experiment(config_path, overrides)
    log_to(exp.run_dir)
    writing_to(exp.run_dir)
    from automtl.rundir.folder import check_owner
    from automtl.rundir.resume import finished_run

    done = finished_run(exp, report=not no_report)
    if done is not None:  # a rerun of a finished search: its summary, without TensorFlow
        from automtl.run.summary import print_finished

        check_owner(exp, exp.run_dir)
        print_finished(make_console(), done)
        return
    if not quiet:  # the first line within a second: checks and TensorFlow's start take a while on a busy machine
        click.echo(f"automtl search '{exp.name}': checking the data, then loading TensorFlow ...")
    from automtl.run.search import check_files, run_checked

    checked = check_files(exp)  # every bad input is refused here, before TensorFlow loads
    quiet_tensorflow()
    from automtl.rundir.lock import release

    try:
        summary = run_checked(checked, console=make_console(), quiet=quiet, report=not no_report, started=started)
    finally:
        release(exp.run_dir)  # the next search may use the folder (a process's exit releases it too)
    if summary.interrupted:
        sys.exit(130)
    if summary.stopped:
        sys.exit(1)
    if summary.best is None and not summary.worker:
        sys.exit(1)


def demo_files(demo: str, run_dir: Path) -> Path:
    """The demo's experiment file in ``RUN_DIR/data``: written on first use, kept as it is afterwards.

    A rerun resumes on the data the study started with, and a run folder is
    not written before the search's checks have passed (:func:`check_files`).
    """
    import shutil
    import tempfile

    from automtl.core.plugins import write_demo
    from automtl.errors import ConfigError
    from automtl.rundir.folder import check_out_folder

    check_out_folder(run_dir)
    data = run_dir / "data"
    marker = data / DEMO_MARKER
    if data.exists():
        found = marker.read_text().strip() if marker.is_file() else _experiment_name(data / "experiment.yaml")
        if found != demo or not (data / "experiment.yaml").is_file():
            held = f"demo '{found}'" if found else "files that are not a demo's"
            raise ConfigError(f"{data} holds {held}, not demo '{demo}'; use another --out")
        return data / "experiment.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".automtl-demo-", dir=run_dir))
    try:
        written = write_demo(demo, staging)
        (staging / DEMO_MARKER).write_text(demo + "\n")
        staging.rename(data)  # all of it or nothing: an interrupted write leaves no half demo behind
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data / Path(written).relative_to(staging)


def _experiment_name(path: Path) -> str | None:
    """The ``name`` in a demo's experiment file written before demos were marked (None if unreadable)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return raw.get("name") if isinstance(raw, dict) else None
