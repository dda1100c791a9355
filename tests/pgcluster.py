"""A throwaway PostgreSQL server for tests and benchmarks (Debian's binaries, run as the ``postgres`` user).

It listens on a free port of 127.0.0.1 with password authentication and is
stopped (and its files removed) when the ``with`` block ends. Shared by the
PostgreSQL tests and ``bench/storage_scale.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

USER, PASSWORD, DATABASE = "automtl", "s3cret-pw", "studies"


def server_bin() -> Path:
    """Debian's PostgreSQL server binaries (the newest installed version), or AUTOMTL_PG_BIN."""
    if os.environ.get("AUTOMTL_PG_BIN"):
        return Path(os.environ["AUTOMTL_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


def missing() -> str | None:
    """Why no server can be started here, or None."""
    bin_dir = server_bin()
    if not (bin_dir / "initdb").exists() or not (bin_dir / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found in {bin_dir} (Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as the postgres user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver psycopg (a dependency of automtl) is missing"
    return None


def _as_postgres(args: list[str]) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(max_connections: int = 100) -> Iterator[str]:
    """Start a server, create the ``studies`` database, yield its URL (with the password); stop it afterwards."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    bin_dir = server_bin()
    root = Path(tempfile.mkdtemp(prefix="automtl-pg-"))  # under /tmp, reachable by the postgres user
    data = root / "data"
    (root / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pw", "postgres", "postgres")
    port = free_port()
    init = _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(root / "pw"),
                         "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"])
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(init.stdout + init.stderr)
    start = _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                          "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                                f"-c max_connections={max_connections}", "start"])
    try:
        if start.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(start.stdout + start.stderr + log)
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    finally:
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
