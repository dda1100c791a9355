"""Optuna's gRPC storage proxy in front of one study database (``automtl storage serve``).

Past a handful of workers, each holding its own database connections, the
database becomes the bottleneck; Optuna's proxy holds one connection pool and
a cache of the study, and workers talk to it with ``--storage grpc://HOST:PORT``
(:class:`automtl.backends.optuna.storage.HeartbeatGrpcStorage`).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import optuna

from automtl.backends.optuna.location import is_grpc, is_journal, redact
from automtl.backends.optuna.storage import open_storage
from automtl.errors import ConfigError

#: Threads answering workers' calls at once (Optuna's default is 10).
DEFAULT_THREADS = 32


def proxied_storage(storage: str) -> Any:
    """The database storage the proxy serves: Optuna's cached RDB storage (a ConfigError for what it cannot serve)."""
    if is_grpc(storage):
        raise ConfigError(f"--storage {storage}: that is a proxy already; give the database URL it should serve")
    if is_journal(storage):
        raise ConfigError(f"--storage {storage}: Optuna's gRPC proxy serves database storages only (SQLite or "
                          "PostgreSQL), not a journal file")
    try:
        rdb = open_storage(storage)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot open study storage {redact(storage)}: {exc}") from None
    except Exception as exc:  # sqlalchemy's OperationalError and friends, without the URL's password
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open study storage {redact(storage)}: {reason.replace(storage, redact(storage))}") \
            from None
    return optuna.storages.get_storage(rdb)  # Optuna wraps an RDB storage in its in-process cache


def serve(storage: str, host: str, port: int, threads: int = DEFAULT_THREADS,
          ready: Callable[[], None] | None = None) -> None:
    """Serve ``storage`` on ``host:port`` until interrupted; ``ready`` is called once the database answered."""
    served = proxied_storage(storage)
    if ready is not None:
        ready()
    with warnings.catch_warnings():  # the proxy is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            optuna.storages.run_grpc_proxy_server(served, host=host, port=port,
                                                  thread_pool=ThreadPoolExecutor(max_workers=threads))
        except RuntimeError as exc:  # grpc: "Failed to bind to address"
            raise ConfigError(f"cannot serve on {host}:{port}: {exc} (is the port in use?)") from None
