"""JSON Lines records, read into Tables (CoNLL files are the text plugin's).

- ``.jsonl`` / ``.ndjson``: one JSON object per line (blank lines are skipped);
  each key becomes a column. List values (``tokens``, ``tags``) stay lists, in
  an object column; a column of only numbers becomes a float column (``NaN``
  where a record lacks the key), so numeric targets work as in a CSV.

Errors name the file and the line; rows are named by their line in later
messages, through ``Table.meta["records"]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from automtl.data.table import Table, object_column
from automtl.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")


def _lines(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            yield from enumerate(fh, start=1)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_jsonl(path: Path) -> Table:
    """One row per JSON object; see the module docstring for column types."""
    records: list[dict[str, Any]] = []
    where: list[str] = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number}: expected a JSON object with named fields, "
                            f"got {type(record).__name__}")
        records.append(record)
        where.append(f"line {number}")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {name: _column([r.get(name) for r in records]) for name in names}
    return Table(str(path), columns, meta={"records": where})


def _column(values: list[Any]) -> np.ndarray:
    """Numbers -> float (NaN where missing) or int; anything else -> an object column (lists kept)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if len(present) == len(values) and all(isinstance(v, int) for v in present):
            return np.array(values, dtype=np.int64)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return object_column(values)
