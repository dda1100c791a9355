"""A column table that tasks and inputs read from, with errors that name the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from automtl.errors import DataError, MissingColumns


@dataclass
class Table:
    """Named columns (numpy arrays sharing their first axis) read from one file.

    CSV and Parquet columns are 1-D; NPZ arrays may have more axes. ``source``
    is the file the rows came from, so every error can name it.
    """

    source: str
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    #: 0-based row numbers in the source file (kept through splits, for messages)
    row_ids: np.ndarray | None = None
    #: Facts about the file beyond its columns, kept through splits: ``path`` (the
    #: file, so paths inside it can be resolved), ``categories`` (a COCO file's
    #: category names, in order), ``records`` (per source row, how a user finds it,
    #: e.g. "image id 7 (a.png)").
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {name: len(col) for name, col in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{self.source}: arrays have different lengths: {lengths}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def column(self, name: str, *, needed_by: str) -> np.ndarray:
        """Return a column, or fail naming the file, the column and who needs it."""
        if name not in self.columns:
            raise MissingColumns(self.source, [(name, needed_by)], self.names)
        return self.columns[name]

    def take(self, index: np.ndarray, source: str | None = None) -> "Table":
        """Rows at ``index`` (a split), keeping or renaming the source."""
        ids = self.row_ids if self.row_ids is not None else np.arange(len(self))
        return Table(source or self.source, {k: v[index] for k, v in self.columns.items()}, ids[index], self.meta)

    def row_label(self, i: int) -> str:
        """How a user finds row ``i`` in the file: 1-based data row (after any header)."""
        row = int(self.row_ids[i] if self.row_ids is not None else i)
        records = self.meta.get("records")
        return str(records[row]) if records is not None else f"row {row + 1}"

    def match(self, patterns: Iterable[str], *, needed_by: str) -> list[str]:
        """Column names matching glob patterns, in file order; each pattern must match."""
        import fnmatch

        chosen: list[str] = []
        unmatched = []
        for pattern in patterns:
            hits = [n for n in self.names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                unmatched.append((pattern, needed_by))
            chosen.extend(h for h in hits if h not in chosen)
        if unmatched:  # every one at once
            raise MissingColumns(self.source, unmatched, self.names)
        return chosen

    def match_each(self, *groups: Iterable[str], needed_by: str) -> list[list[str]]:
        """:meth:`match` for several groups of patterns, every unmatched pattern of all of them in one error."""
        found, missing = [], []
        for patterns in groups:
            try:
                found.append(self.match(patterns, needed_by=needed_by))
            except MissingColumns as exc:
                missing.append(exc)
                found.append([])
        if missing:
            raise MissingColumns.merged(missing)
        return found


def from_frame(frame: Any, source: str, row_ids: np.ndarray | None = None) -> Table:
    """A pandas frame as a Table: numeric columns as they are, others as objects with None for missing cells."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype.kind in "fiub":
            columns[str(name)] = series.to_numpy()
        else:
            columns[str(name)] = series.to_numpy(dtype=object, na_value=None)
    return Table(source, columns, row_ids)


def as_float(table: Table, name: str, *, needed_by: str) -> np.ndarray:
    """A column as float64 (NaN for missing), or a DataError naming the bad value.

    Infinite values are refused (naming the row): no model trains on them,
    and an empty cell is how a value is left out.
    """
    col = table.column(name, needed_by=needed_by)
    out = col.astype(np.float64) if col.dtype.kind in "fiub" else _parse_floats(table, name, needed_by, col)
    infinite = np.isinf(out).reshape(len(out), -1).any(axis=1) if out.size else np.zeros(0, bool)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise DataError(f"{table.source}: {table.row_label(row)}: column '{name}' (needed by {needed_by}) holds an "
                        "infinite value; use finite numbers, or leave the cell empty for a missing value")
    return out


def _parse_floats(table: Table, name: str, needed_by: str, col: np.ndarray) -> np.ndarray:
    out = np.empty(col.shape, dtype=np.float64)
    flat_in, flat_out = col.reshape(-1), out.reshape(-1)
    for i, value in enumerate(flat_in):
        if value is None or (isinstance(value, str) and value.strip() == ""):
            flat_out[i] = np.nan
            continue
        try:
            flat_out[i] = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"{table.source}: column '{name}' (needed by {needed_by}) must be numeric, "
                f"but {table.row_label(i // max(1, flat_in.size // len(col)))} holds {value!r}"
            ) from None
    return out


def is_missing(values: np.ndarray) -> np.ndarray:
    """True where a cell is empty: NaN, None or a blank string."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "iub":
        return np.zeros(values.shape, dtype=bool)
    out = np.zeros(values.shape, dtype=bool)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    for i, v in enumerate(flat_in):
        flat_out[i] = v is None or (isinstance(v, float) and np.isnan(v)) or (
            isinstance(v, str) and v.strip() == ""
        )
    return out


def object_column(values: list[Any]) -> np.ndarray:
    """An object column holding ``values`` element-wise (lists stay lists, not an extra axis)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
