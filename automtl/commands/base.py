"""What every command shares: the user-error wrapper, the RUN_DIR argument, a quiet TensorFlow start.

Light to import (click only): ``automtl --help`` loads every command module.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from automtl.errors import AutomtlError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input: one clear message on stderr, exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutomtlError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)

    return wrapper


RUN_DIR = click.argument("run_dir", type=click.Path(path_type=Path))


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter off the console (imports it once, quietly)."""
    from automtl.tfimport import import_tensorflow_quietly

    import_tensorflow_quietly()
