"""Tables stored as many Parquet files: a folder or a glob, listed in a stable order and read in batches.

A folder (every ``*.parquet``/``*.pq`` below it) or a glob names one table;
its files are sorted by path, so row numbers and batches are the same in every
process. Row counts and sizes come from the files' metadata, without reading rows.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Iterator

from automtl.data.table import Table, from_frame
from automtl.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
GLOB_CHARS = "*?["


def is_dataset(path: Path) -> bool:
    """A folder, or a glob pattern (not one file)."""
    return Path(path).is_dir() or any(c in str(path) for c in GLOB_CHARS)


def is_parquet(path: Path) -> bool:
    return is_dataset(path) or Path(path).suffix.lower() in PARQUET_SUFFIXES


def dataset_files(path: Path, role: str = "data") -> list[Path]:
    """The Parquet files of a folder, a glob or one file, sorted by path; a DataError naming the path for none."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES)
    elif any(c in str(path) for c in GLOB_CHARS):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        other = [p for p in files if p.suffix.lower() not in PARQUET_SUFFIXES]
        if other:
            raise DataError(f"{role} {path}: matches {other[0]}, not a Parquet file (a glob of files names "
                            "*.parquet or *.pq files only)")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{role} file not found: {path}")
    if not files and path.is_dir():
        raise DataError(f"{role} path {path} is a folder with no Parquet files (*.parquet, *.pq) in it; expected a "
                        "data file, or a folder or glob of Parquet files")
    if not files:
        raise DataError(f"{role} {path}: no Parquet files (*.parquet, *.pq) found")
    return files


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and OSError
        raise DataError(f"{path}: cannot read Parquet file: {exc}") from None


def row_counts(files: list[Path]) -> list[int]:
    """Rows per file, from the metadata only; the files must share their column names."""
    counts, names = [], None
    for path in files:
        pf = _parquet_file(path)
        here = list(pf.schema_arrow.names)
        if names is None:
            names = here
        elif here != names:
            raise DataError(f"{path}: columns {here} differ from {files[0]}'s {names}; every file of a table "
                            "has the same columns")
        counts.append(pf.metadata.num_rows)
    if not sum(counts):
        raise DataError(f"{files[0].parent}: the Parquet files hold no rows")
    return counts


def column_kinds(path: Path) -> dict[str, bool]:
    """Column name -> whether it is numeric, from the first file's schema."""
    import pyarrow.types as pat

    schema = _parquet_file(path).schema_arrow
    return {f.name: pat.is_integer(f.type) or pat.is_floating(f.type) or pat.is_boolean(f.type) for f in schema}


def in_memory_bytes(files: list[Path]) -> int:
    """About what the table takes held in memory: 8 bytes a numeric cell, 64 a text cell (a Python object)."""
    kinds = column_kinds(files[0])
    per_row = sum(8 if numeric else 64 for numeric in kinds.values())
    return per_row * sum(row_counts(files))


def iter_batches(files: list[Path], batch_rows: int) -> Iterator[tuple[Any, int, Path]]:
    """``(Arrow record batch, global number of its first row, file)`` for every batch of every file, in order."""
    start = 0
    for path in files:
        try:
            for batch in _parquet_file(path).iter_batches(batch_size=batch_rows):
                yield batch, start, path
                start += batch.num_rows
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read Parquet file: {exc}") from None


def iter_frames(files: list[Path], batch_rows: int) -> Iterator[tuple[Any, int, Path]]:
    """:func:`iter_batches` as pandas frames."""
    for batch, start, path in iter_batches(files, batch_rows):
        yield batch.to_pandas(), start, path


def read_dataset(files: list[Path], source: str) -> Table:
    """Every row of the files as one in-memory table."""
    import pandas as pd

    row_counts(files)  # same columns everywhere, some rows
    frames = [frame for frame, _, _ in iter_frames(files, 1 << 20)]
    table = from_frame(pd.concat(frames, ignore_index=True), source)
    table.meta["files"] = [str(p) for p in files]
    table.meta["path"] = str(files[0].resolve())  # relative paths in cells resolve beside the files
    return table
