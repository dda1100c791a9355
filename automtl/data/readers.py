"""Read CSV, Parquet, NPZ and JSON Lines files into Tables, plus any file type a plugin reads.

Plugins add file types through the ``automtl.readers`` entry-point group (see
:class:`automtl.api.Reader`): the detection plugin reads COCO JSON and box
CSVs, the text plugin CoNLL files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automtl.data.parquet import dataset_files, is_dataset, read_dataset
from automtl.data.table import Table, from_frame
from automtl.data.textfiles import JSONL_SUFFIXES, read_jsonl
from automtl.errors import DataError

CORE_SUFFIXES = (".csv", ".parquet", ".pq", ".npz", *JSONL_SUFFIXES)


def plugin_readers() -> list:
    """Instances of the installed readers (``automtl.readers`` entry points), by name."""
    from automtl.core import plugins

    return [plugins.load("reader", name, where="data reader")() for name in sorted(plugins.entry_points("reader"))]


def suffixes(readers: list) -> list[str]:
    return [*CORE_SUFFIXES, *(s for r in readers for s in r.suffixes)]


def read_table(path: Path, *, role: str = "data") -> Table:
    """Load one data file (or a folder or glob of Parquet files); the suffix picks the reader, then plugins
    may refine the table."""
    path = Path(path)
    if is_dataset(path):
        return read_dataset(dataset_files(path, role), str(path))
    if not path.exists():
        raise DataError(f"{role} file not found: {path}")
    if path.is_dir():
        raise DataError(f"{role} path is a folder, expected a file: {path}")
    suffix = path.suffix.lower()
    readers = plugin_readers()
    try:
        table = _read_core(path, suffix)
        if table is None:
            owner = next((r for r in readers if suffix in r.suffixes), None)
            if owner is None:
                raise DataError(f"{path}: unsupported {role} file type '{suffix}'; "
                                f"expected one of {', '.join(suffixes(readers))}")
            table = owner.read(path)
        for reader in readers:
            table = reader.refine(table, path) or table
    except DataError:
        raise
    except Exception as exc:  # parser errors from pandas/pyarrow/numpy
        raise DataError(f"{path}: cannot read {role} file: {exc}") from None
    if len(table) == 0:
        raise DataError(f"{path}: the {role} file holds no rows")
    table.meta.setdefault("path", str(path.resolve()))
    return table


def _read_core(path: Path, suffix: str) -> Table | None:
    if suffix == ".csv":
        return _pandas_table(path, "csv")
    if suffix in (".parquet", ".pq"):
        return _pandas_table(path, "parquet")
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return Table(str(path), {k: npz[k] for k in npz.files})
    if suffix in JSONL_SUFFIXES:  # one JSON object per line; list fields stay lists
        return read_jsonl(path)
    return None


def _pandas_table(path: Path, kind: str) -> Table:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the data file is empty") from None
    return from_frame(frame, str(path))
