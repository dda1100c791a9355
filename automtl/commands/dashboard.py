"""``automtl dashboard RUN_DIR``: optuna-dashboard on the run's study storage (optional extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from automtl.errors import AutomtlError
from automtl.rundir import backend_name, check_run_dir, study_location

INSTALL_HINT = "pip install 'automtl[dashboard]'  (or: pip install optuna-dashboard)"


def dashboard_storage(run_dir: Path) -> str:
    """The storage URL to serve, after checking the extra is installed and the run used Optuna."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise AutomtlError(f"optuna-dashboard is not installed; install the optional extra with: {INSTALL_HINT}")
    check_run_dir(run_dir)
    backend = backend_name(run_dir)
    if backend != "optuna":
        raise AutomtlError(f"{run_dir}: the dashboard shows Optuna studies; this run used backend '{backend}' "
                           "(see `automtl report` instead)")
    storage, _ = study_location(run_dir)
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        raise AutomtlError(f"{run_dir}: study file {storage.removeprefix('sqlite:///')} not found")
    return storage


def serve(storage: str, host: str, port: int) -> None:
    """Block, serving the dashboard until Ctrl-C."""
    from optuna_dashboard import run_server

    from automtl.backends.optuna_storage import open_storage

    run_server(open_storage(storage), host=host, port=port)  # a URL, or a journal file
