"""What a user reads: consoles that suit a terminal or a log file, tables that fit, paths as given.

On a terminal, output fits its width: a table too wide first drops the
columns that matter least, and only then lets rich shorten cells. In a file
or a pipe nothing is wrapped or cut: lines are as long as their content, so a
log reads (and greps) one record per line. Light (rich only, loaded lazily).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

#: A log's line width: wide enough that no line of automtl's is ever wrapped.
LOG_WIDTH = 100_000


def make_console(stderr: bool = False) -> "Console":
    """A terminal's console, or for files and pipes one that never wraps (``soft_wrap``) or cuts a table."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


def print_table(console: "Console", table: "Table", drop: Sequence[str] = ()) -> None:
    """Print ``table`` whole in a log (its title as a line of its own, so it is not wrapped to the
    table's width); on a terminal drop the ``drop`` columns, in order, while it is too wide."""
    if not console.is_terminal:
        title, table.title = table.title, None
        if title:
            console.print(title, highlight=False, soft_wrap=True)
        console.print(table, soft_wrap=True)
        return
    fit(console, table, drop)
    console.print(table)


def fit(console: "Console", table: "Table", drop: Sequence[str]) -> list[str]:
    """Remove the ``drop`` columns (by header, in order) until the table's natural width fits the
    console; returns the headers removed."""
    from rich.measure import Measurement

    removed = []
    for header in drop:
        if Measurement.get(console, console.options.update_width(LOG_WIDTH), table).maximum <= console.width:
            break
        for i, column in enumerate(table.columns):
            if str(column.header) == header:
                del table.columns[i]
                removed.append(header)
                break
    return removed


def shown(path: str | os.PathLike[str]) -> str:
    """A path as a user reads it: relative when it lies in the working directory, else absolute
    (never ``../../..``, which climbs out of where the user stands)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(absolute)
