"""Read CSV, Parquet, NPZ, COCO JSON, JSON Lines and CoNLL files into Tables, with clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automtl.data.annotations import group_box_csv, is_box_csv, read_coco
from automtl.data.table import Table
from automtl.data.textfiles import CONLL_SUFFIXES, JSONL_SUFFIXES, read_conll, read_jsonl
from automtl.errors import DataError

SUFFIXES = (".csv", ".parquet", ".pq", ".npz", ".json", *JSONL_SUFFIXES, *CONLL_SUFFIXES)


def read_table(path: Path, *, role: str = "data") -> Table:
    """Load one data file; the suffix picks the reader."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{role} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            table = _pandas_table(path, "csv")
            if is_box_csv(table):  # image_path,xmin,ymin,xmax,ymax,label: one row per box
                table = group_box_csv(table, path)
        elif suffix in (".parquet", ".pq"):
            table = _pandas_table(path, "parquet")
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                table = Table(str(path), {k: npz[k] for k in npz.files})
        elif suffix == ".json":  # COCO detection annotations
            table = read_coco(path)
        elif suffix in JSONL_SUFFIXES:  # one JSON object per line; list fields stay lists
            table = read_jsonl(path)
        elif suffix in CONLL_SUFFIXES:  # token and tag per line, blank lines between sentences
            table = read_conll(path)
        else:
            raise DataError(
                f"{path}: unsupported {role} file type '{suffix}'; expected one of {', '.join(SUFFIXES)}"
            )
    except DataError:
        raise
    except Exception as exc:  # parser errors from pandas/pyarrow/numpy
        raise DataError(f"{path}: cannot read {role} file: {exc}") from None
    if len(table) == 0:
        raise DataError(f"{path}: the {role} file holds no rows")
    table.meta.setdefault("path", str(path.resolve()))
    return table


def _pandas_table(path: Path, kind: str) -> Table:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the data file is empty") from None
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype.kind in "fiub":
            columns[str(name)] = series.to_numpy()
        else:
            columns[str(name)] = series.to_numpy(dtype=object, na_value=None)
    return Table(str(path), columns)
