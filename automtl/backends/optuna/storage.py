"""Optuna study storages: SQLite/PostgreSQL (RDB) or a journal file, with heartbeats.

Every storage automtl opens records a heartbeat for each running trial. A
trial whose process died (SIGKILL, a lost machine) stops beating; after the
grace period the next process to start a trial marks it failed and queues a
retry with the same parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``).
RDB storages have this built in; :class:`HeartbeatJournalStorage` adds the
same to the journal file storage that parallel workers on one machine share,
and :class:`HeartbeatGrpcStorage` to a worker behind Optuna's gRPC storage
proxy (``grpc://HOST:PORT``, started by ``automtl storage serve``).
A trial also records its ``host:pid``, so a process on the same host can
tell at once that a running trial's owner is gone.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import optuna
from optuna.storages import GrpcStorageProxy, JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

# Where studies live is light to import (the check before TensorFlow uses it); re-exported here.
from automtl.backends.optuna.location import (  # noqa: F401
    JOURNAL_SUFFIX, default_storage, is_grpc, is_journal, redact, with_driver, without_password,
)

#: Trial user attributes automtl sets for fault handling.
OWNER_ATTR = "worker"
INTERRUPTED_ATTR = "interrupted"
SURPLUS_ATTR = "surplus"
#: How many times a trial whose process died is run again.
MAX_RETRY = 2
HEARTBEAT_ATTR = "automtl:heartbeat"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    return cls(max_retry=MAX_RETRY)


class AttrHeartbeat(BaseHeartbeat):
    """Heartbeats kept as a trial system attribute, for storages without Optuna's own (journal, gRPC proxy).

    Any storage that can set a trial attribute can beat this way, so a worker
    behind the gRPC proxy is failed and retried exactly like one on the database.
    """

    heartbeat_interval: int
    grace_period: int
    stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())  # type: ignore[attr-defined]
        except optuna.exceptions.UpdateFinishedTrialError:  # finished (or failed as stale) meanwhile
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):  # type: ignore[attr-defined]
            beat = t.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None:
                continue
            last = float(beat)
            if "failed_trial" in t.system_attrs and t.datetime_start is not None:
                # a retry inherits the failed trial's attributes, its last heartbeat too: it counts from its start
                last = max(last, t.datetime_start.timestamp())
            if now - last > self.grace_period:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_callback

    # Optuna < 4.9 asks for it under this name.
    get_failed_trial_callback = get_heartbeat_stale_trial_callback


class HeartbeatJournalStorage(AttrHeartbeat, JournalStorage):
    """Optuna's journal file storage plus heartbeats, kept as a trial system attribute."""

    def __init__(self, path: Path, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.path = Path(path)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_callback = stale_callback

    def __reduce__(self) -> Any:  # picklable by its arguments (JournalStorage pickles its log backend)
        return (type(self), (self.path, self.heartbeat_interval, self.grace_period, self.stale_callback))


class HeartbeatGrpcStorage(AttrHeartbeat, GrpcStorageProxy):
    """A worker's end of Optuna's gRPC storage proxy (``automtl storage serve``), plus heartbeats.

    The proxy serves Optuna's storage calls only; a heartbeat is one more trial
    attribute written through it, so no database connection is held per worker.
    """

    def __init__(self, host: str, port: int, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(host=host, port=port)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_callback = stale_callback


def open_proxy(storage: str, heartbeat_interval: int | None, grace_period: int | None) -> Any:
    """The gRPC proxy client for ``grpc://HOST:PORT``, after the proxy answered (or a ConfigError)."""
    from automtl.backends.optuna.location import CONNECT_TIMEOUT_S, check_proxy, grpc_address

    host, port = grpc_address(storage)
    check_proxy(storage, CONNECT_TIMEOUT_S)
    if heartbeat_interval:
        return HeartbeatGrpcStorage(host, port, heartbeat_interval, grace_period or 3 * heartbeat_interval,
                                    retry_callback())
    return GrpcStorageProxy(host=host, port=port)


def open_storage(storage: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> Any:
    """An Optuna storage for a URL or journal path; with heartbeats (and retries) when an interval is given."""
    with warnings.catch_warnings():  # heartbeats and the retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open_storage(storage, heartbeat_interval, grace_period)


def _open_storage(storage: str, heartbeat_interval: int | None, grace_period: int | None) -> Any:
    grace = grace_period or (3 * heartbeat_interval if heartbeat_interval else None)
    callback = retry_callback() if heartbeat_interval else None
    if is_grpc(storage):
        return open_proxy(storage, heartbeat_interval, grace)
    if is_journal(storage):
        path = Path(storage).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        if heartbeat_interval:
            return HeartbeatJournalStorage(path, heartbeat_interval, grace, callback)
        return JournalStorage(JournalFileBackend(str(path)))
    storage = with_driver(storage)
    engine_kwargs: dict[str, Any] = {}
    if storage.startswith("sqlite"):
        # Heartbeat threads write while trials run; wait for SQLite's lock rather than fail at once.
        engine_kwargs = {"connect_args": {"timeout": 30}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    extra = {"heartbeat_interval": heartbeat_interval, "grace_period": grace, **_stale_kwarg(callback)} \
        if heartbeat_interval else {}
    return _rdb_storage(storage, engine_kwargs, extra)


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], extra: dict[str, Any], attempts: int = 6) -> Any:
    """Open an RDB storage, retrying when processes started together race to create its schema."""
    import random
    import time

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **extra)
        except (IntegrityError, ProgrammingError):
            # e.g. "duplicate key ... alembic_version" when another process created the tables first
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * (attempt + 1) * 0.5)
    raise AssertionError("unreachable")


def _stale_kwarg(callback: Any) -> dict[str, Any]:
    import inspect

    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
    return {name: callback}


# -- who owns a running trial, and which trials count towards --trials ---------------------------
def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(tag: str | None) -> bool:
    """True when ``tag`` names a process on this host that no longer exists."""
    if not tag or ":" not in tag:
        return False
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of trials that a retry replaced (their process died)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def ignored(t: FrozenTrial) -> bool:
    """Trials that never count: started past the budget by a racing worker."""
    return bool(t.user_attrs.get(SURPLUS_ATTR))


def counts(t: FrozenTrial, retried: set[int]) -> bool:
    """Whether a finished trial uses up one of ``--trials``.

    Interrupted trials (Ctrl-C) and trials whose process died and were
    retried do not: rerunning the command runs their replacements.
    """
    if t.state not in FINISHED or ignored(t) or t.user_attrs.get(INTERRUPTED_ATTR):
        return False
    return not (t.state == TrialState.FAIL and t.number in retried)
