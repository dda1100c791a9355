"""Where an Optuna study lives: storage URLs and journal files, without importing Optuna.

The run folder's own study file is the default (:func:`default_storage`);
``--storage`` names another. These helpers spell a storage without its
password (for files and messages) and check, before TensorFlow loads, that a
storage can be opened at all (:func:`check_storage`): the folder of a SQLite
or journal file exists, a database driver is installed, a server answers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automtl.errors import ConfigError

if TYPE_CHECKING:
    from automtl.config import SearchConfig

#: Storage values naming a journal file rather than a database URL.
JOURNAL_SUFFIX = ".journal"
#: Seconds a database server gets to answer the check before the search gives up on it.
CONNECT_TIMEOUT_S = 10


def is_journal(storage: str) -> bool:
    return "://" not in storage and storage.endswith(JOURNAL_SUFFIX)


#: The scheme of a study behind Optuna's gRPC storage proxy (``automtl storage serve``).
GRPC_SCHEME = "grpc://"
GRPC_DEFAULT_PORT = 13000


def is_grpc(storage: str) -> bool:
    return storage.startswith(GRPC_SCHEME)


def grpc_address(storage: str) -> tuple[str, int]:
    """``grpc://HOST[:PORT]`` as ``(host, port)``; a ConfigError naming the value otherwise."""
    rest = storage.removeprefix(GRPC_SCHEME).rstrip("/")
    host, sep, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not sep:
        host, port = rest, str(GRPC_DEFAULT_PORT)
    host = host.strip("[]")  # [::1]:13000
    if not host or "/" in host or "@" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--storage {storage}: expected grpc://HOST:PORT (the address of `automtl storage serve`)")
    return host, int(port)


def default_storage(run_dir: Path, parallel: bool = False) -> str:
    """The run folder's study store unless ``search.storage`` names another.

    A journal file (``study.journal``) when the run has one or starts with
    several workers (SQLite is not meant for concurrent writers); otherwise
    SQLite (``study.db``).
    """
    run_dir = Path(run_dir)
    journal, sqlite = run_dir / f"study{JOURNAL_SUFFIX}", run_dir / "study.db"
    if journal.exists() or (parallel and not sqlite.exists()):
        return str(journal.resolve())
    return f"sqlite:///{sqlite.resolve()}"


def in_run_folder(storage: str, run_dir: Path) -> bool:
    """Whether ``storage`` is the run folder's own study file (``study.db`` or ``study.journal``)."""
    run_dir = Path(run_dir).resolve()
    if is_journal(storage):
        return Path(storage).expanduser().resolve() == run_dir / f"study{JOURNAL_SUFFIX}"
    if storage.startswith("sqlite:///"):
        return Path(storage.removeprefix("sqlite:///")).expanduser().resolve() == run_dir / "study.db"
    return False


def with_driver(url: str) -> str:
    """``postgresql://`` spelled with the driver automtl installs (psycopg 3), whatever SQLAlchemy's default."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
    return url


def redact(url: str) -> str:
    """A storage URL with any password replaced, safe to print."""
    if is_journal(url) or is_grpc(url):
        return url
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        return parsed.render_as_string(hide_password=True) if parsed.password else url
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def without_password(url: str) -> str:
    """The URL minus its password (libpq then reads ``PGPASSWORD`` or ``~/.pgpass``), for files on disk."""
    if is_journal(url) or is_grpc(url):
        return url
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return redact(url)
    return parsed._replace(password=None).render_as_string(hide_password=False) if parsed.password else url


def check_storage(settings: "SearchConfig", run_dir: Path, study: str = "") -> None:
    """Refuse a ``--storage`` that cannot be opened, before TensorFlow loads and before the run folder changes.

    The run folder's own study file needs nothing (the folder was checked).
    Nothing is created here: a SQLite file is opened read-only if it exists.
    """
    storage = settings.storage
    if not storage:
        return
    shown = redact(storage)
    if is_grpc(storage):
        check_proxy(storage)
        return
    if is_journal(storage):
        path = Path(storage).expanduser()
        if path.is_dir():
            raise ConfigError(f"--storage {shown}: is a folder, expected a journal file (FILE.journal)")
        _check_creatable(path, f"--storage {shown}")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(with_driver(storage))
    except (ArgumentError, ValueError):
        raise ConfigError(f"--storage {shown}: not a database URL; expected sqlite:///FILE, "
                          "postgresql://USER@HOST/DB or a FILE.journal") from None
    if url.get_backend_name() == "sqlite":
        _check_sqlite(url.database, shown)
        return
    _check_server(url, shown)


def check_proxy(storage: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A gRPC storage proxy answers at ``storage`` (``grpc://HOST:PORT``) within ``timeout`` seconds."""
    host, port = grpc_address(storage)
    if importlib.util.find_spec("grpc") is None:
        raise ConfigError(f"--storage {storage}: the gRPC client is not installed (pip install 'grpcio>=1.60')")
    import grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ConfigError(f"cannot open study storage {storage}: no storage proxy answered within {timeout:g} s "
                              "(start one with: automtl storage serve --storage URL --port PORT)") from None


def _check_creatable(path: Path, what: str) -> None:
    """The file may be created: its nearest existing folder is a folder we may write in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what}: {parent} is a file, so {path} cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: no permission to write in {parent}")


def _check_sqlite(database: str | None, shown: str) -> None:
    if not database or database == ":memory:":
        raise ConfigError(f"--storage {shown}: an in-memory SQLite study would be lost when the search ends; "
                          "name a file: sqlite:///FILE")
    path = Path(database).expanduser()
    if path.is_dir():
        raise ConfigError(f"--storage {shown}: {path} is a folder, expected a SQLite file")
    if not path.exists():
        if not path.parent.is_dir():
            raise ConfigError(f"--storage {shown}: folder {path.parent} not found (SQLite creates the file, "
                              "not its folder)")
        _check_creatable(path, f"--storage {shown}")
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        raise ConfigError(f"--storage {shown}: {path} is not a readable SQLite database ({exc})") from None


def _check_server(url: Any, shown: str) -> None:
    """A server database: its driver is installed and the server answers a connection."""
    import sqlalchemy
    from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

    try:
        engine = sqlalchemy.create_engine(url, connect_args=_timeout_args(url))
    except NoSuchModuleError:
        raise ConfigError(f"--storage {shown}: SQLAlchemy knows no database '{url.drivername}'") from None
    except ModuleNotFoundError as exc:
        hint = " (pip install 'psycopg[binary]')" if "psycopg" in str(exc) else ""
        raise ConfigError(f"--storage {shown}: the database driver is not installed: {exc}{hint}") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open study storage {shown}: {reason}") from None
    finally:
        engine.dispose()


def _timeout_args(url: Any) -> dict[str, Any]:
    return {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_backend_name() in ("postgresql", "mysql") else {}
