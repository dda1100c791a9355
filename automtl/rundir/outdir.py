"""Folders that commands write (``export --out``, ``best/``): never a run, always whole, readable by others.

A command that writes a folder first checks where (:func:`check_out`): it
refuses a run folder, a folder holding one, a folder inside a run that is
not an earlier export, and any other non-empty folder that is not an earlier
automtl export unless ``force``. It then writes into a temporary sibling and
swaps it in by renaming (:func:`atomic_folder`), so a crash or a failed
check leaves the old folder as it was. Needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from automtl.errors import AutomtlError

#: Files that mark a run folder (written by ``automtl search``).
RUN_MARKERS = ("experiment.resolved.yaml", "trials.json", "study.db")
EXPORT_FORMAT = "automtl-export/"
#: The note :func:`atomic_folder` adds to an error raised while it was filled: which folder was being written.
WRITING_NOTE = "while writing "
#: How many entries a folder may hold before it is too big to check for runs inside it.
_WALK_LIMIT = 20000


def is_run_folder(path: Path) -> bool:
    return any((Path(path) / m).exists() for m in RUN_MARKERS)


def is_export(path: Path) -> bool:
    """A folder written by automtl's export: its ``automtl.json`` says ``format: automtl-export/...``."""
    try:
        manifest = json.loads((Path(path) / "automtl.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(EXPORT_FORMAT)


def enclosing_run(path: Path) -> Path | None:
    """The run folder ``path`` lies in (not counting ``path`` itself), if any."""
    for parent in Path(path).resolve().parents:
        if is_run_folder(parent):
            return parent
    return None


def run_inside(path: Path) -> Path | None:
    """A run folder at or below ``path``; refuses to guess in a folder too big to walk."""
    seen = 0
    for root, dirs, files in os.walk(path):
        if any(m in files for m in RUN_MARKERS):
            return Path(root)
        seen += len(dirs) + len(files)
        if seen > _WALK_LIMIT:
            raise AutomtlError(f"--out {path} holds more than {_WALK_LIMIT} files and folders; refusing to replace it "
                               "(choose a new folder)")
    return None


def is_serving_base(path: Path) -> bool:
    """A TF Serving model base written by ``--layout tf-serving``: ``<model>/<version>/`` exports only."""
    models = [p for p in Path(path).iterdir()]
    return bool(models) and all(
        m.is_dir() and all(v.is_dir() and v.name.isdigit() and is_export(v) for v in m.iterdir()) for m in models)


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where a new folder would be created)."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writable(target: Path, what: str) -> None:
    """Refuse ``target`` (a file or folder a command will write) unless a file can be created where it
    goes: a probe file in ``target``'s nearest existing folder, removed at once. Catches read-only
    disks, ``/proc``, permissions and full quotas in a millisecond, before TensorFlow loads."""
    folder = nearest_existing(target)
    if not folder.is_dir():
        raise AutomtlError(f"{what} cannot be written: {folder} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".automtl-probe-", dir=folder)
    except OSError as exc:
        raise AutomtlError(f"{what} cannot be written: cannot create a file in {folder} "
                           f"({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_out(out: Path, force: bool = False, what: str = "--out", serving: bool = False) -> None:
    """Refuse an output folder whose replacement could destroy what the user owns.

    ``serving``: ``out`` is a TF Serving model base that only gains a new version folder
    (nothing in it is replaced), so an earlier base of automtl exports is fine too.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AutomtlError(f"{what} {out} is a file; give a folder to write")
    # a new folder is written beside ``out`` and renamed (a TF Serving base gains a version folder in it)
    probe_writable(out if serving and out.exists() else out.parent, f"{what} {out}")
    if not out.exists():
        return
    if is_run_folder(out):
        raise AutomtlError(f"{what} {out} is a run folder (it holds "
                           f"{', '.join(m for m in RUN_MARKERS if (out / m).exists())}); "
                           "exporting there would destroy the run: choose another folder")
    if not any(out.iterdir()) or is_export(out) or (serving and is_serving_base(out)):
        return
    run = enclosing_run(out)
    if run is not None:
        raise AutomtlError(f"{what} {out} is a folder of the run {run} and not an earlier export; "
                           "it is never replaced (even with --force): choose another folder")
    inner = run_inside(out)
    if inner is not None:
        raise AutomtlError(f"{what} {out} holds the run folder {inner}; it is never replaced (even with "
                           "--force): choose another folder")
    if not force:
        raise AutomtlError(f"{what} {out} exists and is not an earlier automtl export (no automtl.json with "
                           f"format {EXPORT_FORMAT}...); choose a new folder, or pass --force to replace it")


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to fill; on success it replaces ``out`` by renames.

    The folder gets the permissions a plain ``mkdir`` would (the umask's), not
    ``mkdtemp``'s private 0700, so a serving container or another user can read it.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())
    old: Path | None = None
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
            os.rmdir(old)
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old is not None:
                old.rename(out)
                old = None
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        exc.add_note(f"{WRITING_NOTE}{out}")  # a full disk is reported on ``out``, not on the temporary folder
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


#: How the summaries name what an export folder holds.
_DESCRIBED = {"saved_model": "saved_model/ (serving_default)"}


def exported_files(folder: Path) -> list[str]:
    """Every file and folder an export wrote (the manifest last), as the summaries list them."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir() if not p.name.startswith("."))
    names = [_DESCRIBED.get(n.rstrip("/"), n) for n in names if n != "automtl.json"]
    return names + (["automtl.json"] if (Path(folder) / "automtl.json").exists() else [])
