"""One live search per run folder: an advisory lock that names its holder (PID, host, start, command).

Two ``automtl search`` processes on one ``--out`` would both train the same
start points and both replace ``best/`` and the tables. The first search holds
``RUN_DIR/.automtl-search.lock`` (an ``fcntl`` lock, released by the kernel when
the process ends, however it ends); a second is refused with the holder's PID
and host. A lock whose holder died is stale and taken over. Processes that
join a running search on purpose (``--workers N``'s search workers, Keras
Tuner's workers) do not take it. Needs no TensorFlow.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from automtl.errors import ConfigError

LOCK_FILE = ".automtl-search.lock"

try:
    import fcntl
except ImportError:  # not POSIX: the holder's PID decides (on this host) whether the lock is stale
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Holder:
    """The search that holds a run folder, as its lock file says."""

    pid: int
    host: str
    started: str = ""
    command: str = ""

    def describe(self) -> str:
        if not self.pid:
            return "its holder has not yet written its PID"
        since = f", since {self.started}" if self.started else ""
        command = f": {self.command}" if self.command else ""
        return f"PID {self.pid} on host {self.host}{since}{command}"

    def alive(self) -> bool | None:
        """Whether the holder still runs: known on this host only (None elsewhere)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # it exists, under another user
            return True
        return True


#: The run folders this process holds, with their open lock files (an fcntl lock lives with its file).
_held: dict[Path, IO[str]] = {}


def check_free(run_dir: Path) -> None:
    """Refuse a search on ``run_dir`` while another live search holds it; writes nothing."""
    path = Path(run_dir) / LOCK_FILE
    if _key(run_dir) in _held or not path.is_file():
        return
    holder = _live_holder(path)
    if holder is not None:
        raise ConfigError(refusal(run_dir, holder))


def hold(run_dir: Path) -> None:
    """Take ``run_dir`` for this process's search (until :func:`release` or the process ends)."""
    key = _key(run_dir)
    if key in _held:
        return
    path = Path(run_dir) / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 - kept open: the lock lives as long as the file is open
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(refusal(run_dir, _read(path) or Holder(0, "unknown host"))) from None
        else:
            holder = _read(path)
            if holder is not None and holder.alive() is not False and holder.pid != os.getpid():
                raise ConfigError(refusal(run_dir, holder))
        me = Holder(os.getpid(), socket.gethostname(), datetime.datetime.now().isoformat(timespec="seconds"),
                    " ".join(["automtl", *sys.argv[1:]])[:300])
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(me.__dict__) + "\n")
        handle.flush()
    except BaseException:
        handle.close()
        raise
    _held[key] = handle


def release(run_dir: Path) -> None:
    """Let another search use ``run_dir`` (the lock file stays, empty: a run entry like the others)."""
    handle = _held.pop(_key(run_dir), None)
    if handle is None:
        return
    try:
        handle.seek(0)
        handle.truncate()
    except OSError:
        pass
    handle.close()  # closing the file releases the fcntl lock


def refusal(run_dir: Path, holder: Holder) -> str:
    return (f"run folder {run_dir} is in use by another search ({holder.describe()}); one search runs in a run "
            "folder at a time: wait for it to finish (or stop it), or use another --out. To train with more "
            "processes, give the one search --workers N, or give each machine its own --out and one shared --storage")


def _live_holder(path: Path) -> Holder | None:
    """The holder of the lock at ``path`` when it still runs; None for a free or stale lock."""
    if fcntl is not None:
        try:
            with open(path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return _read(path) or Holder(0, "unknown host")
                fcntl.flock(handle, fcntl.LOCK_UN)
                return None
        except OSError:
            return None
    holder = _read(path)
    return holder if holder is not None and holder.alive() is not False else None


def _read(path: Path) -> Holder | None:
    try:
        data: Any = json.loads(path.read_text() or "null")
        return Holder(int(data["pid"]), str(data["host"]), str(data.get("started", "")), str(data.get("command", "")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _key(run_dir: Path) -> Path:
    return Path(run_dir).expanduser().resolve()


@atexit.register
def _release_all() -> None:
    for folder in list(_held):
        release(folder)
