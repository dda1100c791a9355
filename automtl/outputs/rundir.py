"""A finished run folder, read back: its experiment snapshot, study storage and trial files.

``automtl report``, ``export``, ``trials`` and ``dashboard`` all start from a
run folder; this module is what they share, and it needs no TensorFlow.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automtl.config import Experiment, build_experiment, read_yaml
from automtl.errors import AutomtlError, ConfigError

SNAPSHOT = "experiment.resolved.yaml"


@dataclass
class DiskUse:
    """Bytes kept for the trials' models and curves, so export needs no retraining."""

    trials: int
    total_bytes: int

    @property
    def per_trial_bytes(self) -> float:
        return self.total_bytes / self.trials if self.trials else 0.0

    def describe(self) -> str:
        if not self.trials:
            return "no trial models kept"
        return (f"{self.trials} trial model(s) kept: {human_bytes(self.total_bytes)} "
                f"({human_bytes(self.per_trial_bytes)} per trial)")


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AutomtlError(f"run folder not found: {run_dir}")
    if not (run_dir / SNAPSHOT).exists():
        raise AutomtlError(f"{run_dir}: no {SNAPSHOT} here; expected a run folder written by `automtl search`")
    return run_dir


def raw_snapshot(run_dir: Path) -> dict[str, Any]:
    """The snapshot as plain data (tolerant: reports read it even if the schema moved on)."""
    raw = read_yaml(check_run_dir(run_dir) / SNAPSHOT, "run snapshot")
    if not isinstance(raw, dict):
        raise AutomtlError(f"{run_dir / SNAPSHOT}: expected a mapping, got {type(raw).__name__}")
    return raw


def load_experiment(run_dir: Path) -> Experiment:
    """The validated experiment the run used; relative paths resolve from the experiment file's folder."""
    run_dir = check_run_dir(run_dir)
    raw = raw_snapshot(run_dir)
    base = Path(raw.pop("base_dir", None) or run_dir).resolve()  # the experiment file's folder
    return build_experiment(raw, str(run_dir / SNAPSHOT), base)


def backend_name(run_dir: Path) -> str:
    from automtl.registry import AXES

    return str((raw_snapshot(run_dir).get("search") or {}).get("backend", AXES["backend"].default))


def study_location(run_dir: Path) -> tuple[str, str]:
    """``(storage URL, study name)`` of an Optuna run."""
    raw = raw_snapshot(run_dir)
    search = raw.get("search") or {}
    from automtl.backends.optuna.backend import default_storage

    storage = search.get("storage") or default_storage(Path(run_dir))
    return storage, str(search.get("study") or raw.get("name") or "experiment")


def disk_use(run_dir: Path) -> DiskUse:
    folders = [p for p in (Path(run_dir) / "trials").glob("*") if p.is_dir()]
    total = sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
    return DiskUse(len(folders), total)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def ensure_writable(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".automtl-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output folder {run_dir} cannot be written: {exc.strerror or exc}") from None
    return run_dir


def write_snapshot(exp: Experiment, space_path: Path | None, run_dir: Path, space_raw: dict | None = None) -> None:
    """Keep what the run used next to its results (``space_raw``: the ``auto`` space that was chosen)."""
    data = exp.model_dump(mode="json", exclude={"base_dir"})
    # Absolute paths, so `automtl export RUN_DIR` can refit the plugins from this file alone.
    data["data"]["train"] = str(exp.path(exp.data.train).resolve())
    if exp.data.valid is not None:
        data["data"]["valid"] = str(exp.path(exp.data.valid).resolve())
    data["search"]["out"] = str(run_dir.resolve())
    if data["search"].get("storage"):
        from automtl.backends.optuna.storage import without_password

        data["search"]["storage"] = without_password(data["search"]["storage"])  # never a password on disk
    # Plugin options may hold paths relative to the experiment file (an image root, say).
    data["base_dir"] = str(Path(exp.base_dir).resolve())
    (run_dir / "experiment.resolved.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    target = run_dir / "space.yaml"
    if space_raw is not None:  # auto: the space that was chosen, as a space file
        target.write_text(yaml.safe_dump(space_raw, sort_keys=False, width=100))
    elif space_path is not None and space_path.resolve() != target.resolve():
        shutil.copyfile(space_path, target)
