"""What every command shares: the error wrapper, the RUN_DIR argument, a quiet TensorFlow start.

Light to import (click only): ``automtl --help`` loads every command module.
"""

from __future__ import annotations

import datetime
import errno
import functools
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from automtl.errors import AutomtlError
from automtl.rundir.outdir import WRITING_NOTE

#: Set to 1 to let unexpected errors raise with their traceback (for developers).
DEBUG_ENV = "AUTOMTL_DEBUG"
#: The run folder where this command writes the traceback of an unexpected error, and whether it must
#: already be a run folder then (a command reading a run) or may be one this search started.
_log_dir: list[tuple[Path, bool]] = []


def log_to(folder: Path | None, *, must_be_run: bool = False) -> None:
    """Where an unexpected error's traceback goes: this run folder if it exists then, else a temporary file."""
    _log_dir[:] = [(Path(folder), must_be_run)] if folder is not None else []


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """No traceback reaches a user.

    Bad input (:class:`AutomtlError`) and problems of the environment (a
    missing folder, a permission, a full disk, a missing module, a model file
    Keras' safe mode refuses) print one clear line and exit with code 2. Any
    other error is a bug: one line saying so and where the full traceback was
    written (the run folder's ``automtl-error.log``, or a temporary file),
    exit code 1.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        log_to(kwargs.get("run_dir"), must_be_run=True)  # commands taking a RUN_DIR log there
        writing_to(kwargs.get("out") or kwargs.get("run_dir"))  # named when a full disk gives no path
        try:
            return fn(*args, **kwargs)
        except AutomtlError as exc:
            _fail(str(exc), 2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: classify, never a traceback
            problem = environment_problem(exc)
            if problem is not None:
                _fail(problem, 2)
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            log = write_traceback(exc)
            where = f"the full traceback is in {log}" if log else "the traceback could not be written anywhere"
            _fail(f"internal error (a bug in automtl or a plugin): {_one_line(exc)}; {where}", 1)

    return wrapper


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: errno values that mean "the machine or the user's files", not a bug.
ENVIRONMENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
                      errno.EROFS, errno.EEXIST, errno.ENOTEMPTY, errno.EDQUOT, errno.EMFILE, errno.ENAMETOOLONG,
                      errno.ELOOP, errno.EBUSY, errno.EXDEV}


#: What the disk or its permissions say when a write fails (as ``strerror``, TensorFlow, h5py and SQLite word
#: it), and the ``errno`` behind it: found in any error's text, even one that is not an :class:`OSError`.
WRITE_FAILURES = {
    "no space left on device": errno.ENOSPC, "database or disk is full": errno.ENOSPC,
    "read-only file system": errno.EROFS, "attempt to write a readonly database": errno.EROFS,
    "disk quota exceeded": errno.EDQUOT, "permission denied": errno.EACCES,
}
#: Where the command writes (its --out or run folder): named when a failed write does not say where.
_writing: list[Path] = []


def writing_to(path: Path | None) -> None:
    """Where this command writes: named in a full-disk or read-only message that carries no path."""
    _writing[:] = [Path(path)] if path is not None else []


def write_failure(exc: BaseException) -> str | None:
    """One line for a write the disk refused (full, read-only, over quota, no permission): its cause and its
    path (from the error, else the command's output folder); walks the chain of causes, since TensorFlow
    and SQLite report a full disk as their own errors. None when it is not one."""
    for err in _chain(exc):
        text = " ".join(str(err).split())
        if isinstance(err, OSError) and err.errno in WRITE_FAILURES.values():
            cause = os.strerror(err.errno)
            path = err.filename if err.filename is not None else _path_in(text)
        else:
            found = next((phrase for phrase in WRITE_FAILURES if phrase in text.lower()), None)
            if found is None:
                continue
            cause, path = os.strerror(WRITE_FAILURES[found]), _path_in(text)
        target = next((n.removeprefix(WRITING_NOTE) for e in _chain(exc) for n in getattr(e, "__notes__", ())
                       if isinstance(n, str) and n.startswith(WRITING_NOTE)), None)
        where = target or path or (f"while writing in {_writing[0]}" if _writing else None)
        detail = "" if cause.lower() in text.lower() or not text else f" ({text[:200]})"
        return f"{cause}: {where}{detail}" if where else f"{cause}{detail}"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _path_in(text: str) -> str | None:
    """The first absolute path in an error's text (TensorFlow names the file it failed to write)."""
    import re

    match = re.search(r"(?:^|[\s'\"(=])(/[^\s'\";,)]+)", text)
    return match.group(1) if match else None


def environment_problem(exc: BaseException) -> str | None:
    """One line for an error of the environment (exit code 2), or None for a bug."""
    failed_write = write_failure(exc)
    if failed_write is not None:
        return failed_write
    if isinstance(exc, OSError) and (exc.errno in ENVIRONMENT_ERRNOS or exc.errno is None and exc.filename):
        what = exc.strerror or str(exc)
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{what}: {where}" if where else what
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller --batch-size, fewer rows or a smaller search space"
    if isinstance(exc, ModuleNotFoundError) and exc.name and not exc.name.startswith("automtl"):
        return (f"Python module '{exc.name}' is not installed, and this needs it: install it "
                f"(pip install {exc.name.split('.')[0]}) or the automtl extra that brings it")
    if isinstance(exc, ValueError) and "safe_mode" in str(exc):
        first = " ".join(str(exc).split())[:400]
        return (f"Keras' safe mode refused to load a model file: it holds code (a Lambda layer or an unregistered "
                f"custom object) that safe mode will not run. Keras said: {first}")
    return None


def write_traceback(exc: BaseException) -> Path | None:
    """Append the traceback to the run folder's error log, else to a new temporary file; its path."""
    from automtl.rundir.folder import ERROR_LOG, is_run_folder

    text = (f"--- {datetime.datetime.now().isoformat(timespec='seconds')} automtl {' '.join(sys.argv[1:])}\n"
            + "".join(traceback.format_exception(exc)))
    for folder, must_be_run in _log_dir:
        if folder.is_dir() and (is_run_folder(folder) or not must_be_run):
            try:
                path = folder / ERROR_LOG
                with path.open("a") as fh:
                    fh.write(text)
                return path
            except OSError:
                pass
    try:
        fd, name = tempfile.mkstemp(prefix="automtl-error-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return Path(name)
    except OSError:
        return None


RUN_DIR = click.argument("run_dir", type=click.Path(path_type=Path))


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        from automtl.tfimport import be_verbose

        be_verbose()


#: ``-v``: TensorFlow's, absl's and Keras' own log lines and warnings, which stay off the console by default.
VERBOSE = click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True, callback=_verbose,
                       help="Show TensorFlow's, absl's and Keras' own log lines and warnings (as AUTOMTL_TF_LOG=0; "
                       "default: off).")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter off the console (imports it once, quietly)."""
    from automtl.tfimport import import_tensorflow_quietly

    import_tensorflow_quietly()
