"""``automtl storage serve``: Optuna's gRPC storage proxy in front of a study database, for many workers."""

from __future__ import annotations

import click

from automtl.commands.base import user_errors

#: The environment variable ``--storage`` falls back to (a Kubernetes Secret, so the password is in no command line).
STORAGE_ENV = "AUTOMTL_STORAGE"


@click.group()
def storage() -> None:
    """Study storage shared by many workers."""


@storage.command()
@click.option("--storage", "url", envvar=STORAGE_ENV, required=True,
              help=f"The study database: postgresql://USER:PASS@HOST/DB or sqlite:///FILE (or ${STORAGE_ENV}).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=13000, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=32, show_default=True,
              help="Worker calls answered at once.")
@user_errors
def serve(url: str, host: str, port: int, threads: int) -> None:
    """Run Optuna's gRPC storage proxy: workers then use `--storage grpc://HOST:PORT`.

    The proxy keeps one pool of database connections and a cache of the study,
    so hundreds of workers do not each hold connections. Stops on Ctrl-C.
    """
    from automtl.backends.optuna.location import redact
    from automtl.backends.optuna.proxy import serve as run

    def ready() -> None:
        click.echo(f"storage proxy for {redact(url)} on grpc://{host}:{port} (Ctrl-C to stop)")

    try:
        run(url, host, port, threads, ready)
    except KeyboardInterrupt:
        click.echo("storage proxy stopped")
