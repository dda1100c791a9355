"""``automtl dashboard RUN_DIR``: optuna-dashboard on the run's study storage (optional extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from automtl.commands.base import RUN_DIR, user_errors

from automtl.errors import AutomtlError

INSTALL_HINT = "pip install 'automtl[dashboard]'  (or: pip install optuna-dashboard)"


def dashboard_storage(run_dir: Path) -> str:
    """The storage URL to serve, after checking the extra is installed and the run used Optuna."""
    from automtl.rundir.folder import backend_name, check_run_dir, study_location

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise AutomtlError(f"optuna-dashboard is not installed; install the optional extra with: {INSTALL_HINT}")
    check_run_dir(run_dir)
    from automtl import backends

    backend = backend_name(run_dir)
    if not backends.spec(backend).optuna_study:
        raise AutomtlError(f"{run_dir}: the dashboard shows Optuna studies; this run used backend '{backend}' "
                           "(see `automtl report` instead)")
    storage, _ = study_location(run_dir)
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        raise AutomtlError(f"{run_dir}: study file {storage.removeprefix('sqlite:///')} not found")
    return storage


def serve(storage: str, host: str, port: int) -> None:
    """Block, serving the dashboard until Ctrl-C."""
    from optuna_dashboard import run_server

    from automtl.backends.optuna.storage import open_storage

    run_server(open_storage(storage), host=host, port=port)  # a URL, or a journal file


@click.command()
@RUN_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@user_errors
def dashboard(run_dir: Path, host: str, port: int) -> None:
    """Start optuna-dashboard on a run's study (needs the `dashboard` extra)."""
    from automtl.commands.dashboard import dashboard_storage, serve

    storage = dashboard_storage(run_dir)
    from automtl.backends.optuna.storage import redact

    click.echo(f"optuna-dashboard on {redact(storage)}: http://{host}:{port}/ (Ctrl-C to stop)")
    serve(storage, host, port)
