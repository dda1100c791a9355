"""A finished run folder, read back: its experiment snapshot, study storage and trial files.

``automtl report``, ``export``, ``trials`` and ``dashboard`` all start from a
run folder; this module is what they share, and it needs no TensorFlow.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from automtl.config import Experiment, build_experiment, read_yaml
from automtl.core import registry
from automtl.core.registry import AXES
from automtl.errors import AutomtlError, ConfigError

SNAPSHOT = "experiment.resolved.yaml"
#: Written once, when a search first opens its study here: which backend, study and objective own the folder.
OWNER_FILE = "automtl-run.json"
#: Where the CLI writes the traceback of an unexpected internal error (see ``commands/base.py``).
ERROR_LOG = "automtl-error.log"
#: Names automtl writes in a run folder (``data`` holds a demo's files). A folder holding nothing else
#: may become a run folder.
RUN_ENTRIES = frozenset({SNAPSHOT, OWNER_FILE, ERROR_LOG, "space.yaml", "trials.csv", "trials.json", "report.html",
                         "study.db", "study.journal", "trials", "best", "keras_tuner", "data"})
#: ... and the temporary or lock files next to them (``study.db-journal``, ``trials.csv.123.tmp``).
RUN_PREFIXES = ("study.db-", "study.journal.", "trials.csv.", "trials.json.", ".automtl", f".{OWNER_FILE}.")


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
    return str((raw_snapshot(run_dir).get("search") or {}).get("backend", AXES["backend"].default))


def study_location(run_dir: Path) -> tuple[str | None, str]:
    """``(storage, study name)`` of a run; the storage is None where its backend takes no storage setting."""
    raw = raw_snapshot(run_dir)
    search = raw.get("search") or {}
    storage = search.get("storage") or _store(backend_name(run_dir)).default(Path(run_dir))
    return storage, str(search.get("study") or raw.get("name") or "experiment")


def _store(backend: str) -> Any:
    """Backend ``backend``'s :class:`~automtl.backends.base.StudyStore` (through the registry: no engine loads)."""
    return registry.member("backend", backend, where="search.backend").study_store()


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
    if data["search"].get("storage"):  # never a password on disk
        data["search"]["storage"] = _store(exp.search.backend).for_disk(data["search"]["storage"])
    # Plugin options may hold paths relative to the experiment file (an image root, say).
    data["base_dir"] = str(Path(exp.base_dir).resolve())
    (run_dir / "experiment.resolved.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    target = run_dir / "space.yaml"
    if space_raw is not None:  # auto: the space that was chosen, as a space file
        target.write_text(yaml.safe_dump(space_raw, sort_keys=False, width=100))
    elif space_path is not None and space_path.resolve() != target.resolve():
        shutil.copyfile(space_path, target)


# -- which run a folder belongs to -------------------------------------------------------------
def is_run_folder(path: Path) -> bool:
    """A folder ``automtl search`` wrote: its owner record, or the files export also looks for
    (:data:`automtl.rundir.outdir.RUN_MARKERS`: snapshot, ``trials.json``, ``study.db``)."""
    from automtl.rundir.outdir import is_run_folder as holds_run_files

    path = Path(path)
    return path.is_dir() and ((path / OWNER_FILE).is_file() or holds_run_files(path))


def enclosing_run_folder(path: Path) -> Path | None:
    """The run folder ``path`` is, or lies inside (its nearest such ancestor); None when there is none."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if is_run_folder(folder):
            return folder
    return None


def refuse_inside_run(path: Path, option: str = "--out", beside: str = "export") -> None:
    """Export, distill and predict never write into a run folder, ``--force`` or not: its ``best/``,
    tables and trial folders describe its study alone. ``beside``: the name suggested next to the run."""
    path = Path(path).expanduser()
    for candidate in dict.fromkeys((path.absolute(), path.resolve())):
        run = enclosing_run_folder(candidate)
        if run is not None:
            where = "is the run folder" if run == candidate else "lies inside the run folder"
            raise ConfigError(f"{option} {path} {where} {run}; export, distill and predict never "
                              "write into a run (its best/, tables and trials belong to its study), even with --force: "
                              f"write beside it, e.g. {option} {run.parent / f'{run.name}-{beside}'}")


def run_folders_under(path: Path, max_depth: int = 3) -> list[Path]:
    """Run folders at or below ``path`` (down to ``max_depth`` levels), e.g. to refuse writing over them."""
    path = Path(path)
    found: list[Path] = []
    level = [path] if path.is_dir() else []
    for _ in range(max_depth + 1):
        below: list[Path] = []
        for folder in level:
            if is_run_folder(folder):
                found.append(folder)
                continue
            try:
                below.extend(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
        level = below
    return found


@dataclass(frozen=True)
class RunOwner:
    """The study a run folder belongs to: its tables and ``best/`` describe this study alone."""

    backend: str
    study: str
    objective: str
    #: the study storage, without its password; None: the run folder's own file (``study.db``/``study.journal``)
    storage: str | None = None

    def describe(self) -> str:
        where = f" in {self.storage}" if self.storage else ""
        return f"{self.backend} study '{self.study}' (objective {self.objective}){where}"


def owner_for(exp: Experiment, run_dir: Path) -> RunOwner:
    """The owner a search of ``exp`` in ``run_dir`` would be."""
    settings = exp.search
    return RunOwner(settings.backend, exp.study_name, _objective(settings.objective, settings.latency_objective),
                    _storage_key(settings.storage, run_dir, settings.backend))


def _objective(objective: str, latency: bool) -> str:
    """The objective as a study's directions see it: a Pareto search with latency has one more."""
    return f"{objective} with latency" if latency else objective


def _storage_key(storage: str | None, run_dir: Path, backend: str) -> str | None:
    return _store(backend).key(storage, run_dir) if storage else None


def owner_of(run_dir: Path) -> RunOwner | None:
    """Who owns ``run_dir``: its owner record, else (runs of older versions) its snapshot; None for neither."""
    run_dir = Path(run_dir)
    record = run_dir / OWNER_FILE
    if record.is_file():
        try:
            data = json.loads(record.read_text())
            return RunOwner(str(data["backend"]), str(data["study"]), str(data["objective"]), data.get("storage"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{record}: unreadable run record ({exc}); it says which study owns {run_dir}: "
                              "restore it, or use another --out") from None
    if not (run_dir / SNAPSHOT).is_file():
        return None
    raw = raw_snapshot(run_dir)
    search = raw.get("search") or {}
    storage = search.get("storage")
    backend = str(search.get("backend") or AXES["backend"].default)
    return RunOwner(backend, str(search.get("study") or raw.get("name") or "experiment"),
                    _objective(str(search.get("objective") or "mean"), bool(search.get("latency_objective"))),
                    _storage_key(storage, run_dir, backend) if storage else None)


def check_owner(exp: Experiment, run_dir: Path) -> None:
    """Refuse a search that would mix another study into ``run_dir`` (its tables and ``best/`` would be replaced)."""
    owner = owner_of(run_dir)
    if owner is None:
        return
    wanted = owner_for(exp, run_dir)
    changes = []
    if wanted.backend != owner.backend:
        changes.append(f"backend {wanted.backend}")
    if wanted.study != owner.study:
        changes.append(f"study '{wanted.study}'")
    if wanted.objective != owner.objective:
        changes.append(f"objective {wanted.objective}")
    if wanted.storage != owner.storage:
        changes.append(f"storage {wanted.storage or 'in the run folder'}")
    if changes:
        raise ConfigError(
            f"run folder {run_dir} holds the {owner.describe()}; this search asks for {', '.join(changes)}, and a run "
            f"folder keeps one study (its trials.csv and best/ would be replaced): use another --out for a new run, "
            "or the same settings to resume"
        )


def record_owner(exp: Experiment, run_dir: Path) -> None:
    """Write the owner record on first use (kept as it is afterwards)."""
    record = Path(run_dir) / OWNER_FILE
    if record.exists():
        return
    from automtl import __version__

    data = {**asdict(owner_for(exp, run_dir)), "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "automtl": __version__}
    _write_atomically(record, json.dumps(data, indent=1) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_out_folder(run_dir: Path) -> None:
    """Refuse a run folder that would overwrite what automtl does not own; nothing is created here (a probe
    file shows that the folder can be written, and is removed at once).

    ``run_dir`` may be new, empty, a run folder (resumed when the study is the
    same: see :func:`check_owner`) or hold only what automtl writes; it may not
    be a file, lie inside another run folder, or be a folder of other files.
    """
    run_dir = Path(run_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"output folder {run_dir} is a file; choose a folder with --out")
    outer = enclosing_run_folder(run_dir.absolute().parent)
    if outer is not None:
        raise ConfigError(f"output folder {run_dir} lies inside the run folder {outer}, whose files are not "
                          "another run's to write; choose a folder outside it with --out")
    if run_dir.is_dir() and not is_run_folder(run_dir):
        try:
            foreign = sorted(p.name for p in run_dir.iterdir()
                             if p.name not in RUN_ENTRIES and not p.name.startswith(RUN_PREFIXES))
        except OSError as exc:
            raise ConfigError(f"output folder {run_dir} cannot be read: {exc.strerror or exc}") from None
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ConfigError(f"output folder {run_dir} already holds files that are not an automtl run ({shown}); "
                              "choose a new or empty folder with --out")
    from automtl.rundir.outdir import probe_writable

    probe_writable(run_dir, f"output folder {run_dir}")


def check_output_file(out: Path, option: str = "--out", *, replaceable: tuple[str, ...] = ()) -> Path:
    """A file a command will write: not a folder, in a folder that can be written, and not an existing
    file of a run folder (``replaceable``: names in a run folder this command owns, e.g. ``report.html``)."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a folder; name the file to write, e.g. {out / ('out' + out.suffix)}")
    run = enclosing_run_folder(out.parent)
    if run is not None and out.exists() and not (out.parent == run and out.name in replaceable):
        raise ConfigError(f"{option} {out} would overwrite a file of the run folder {run}; write it elsewhere "
                          "(or to a new file name)")
    from automtl.rundir.outdir import probe_writable

    probe_writable(out.parent, f"{option} {out}")
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"{option} {out} cannot be written: no permission to write {out}")
    return out
