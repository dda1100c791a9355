"""Training tables larger than memory: Parquet files read in batches, encoded once, streamed every epoch.

``data.stream`` (or a table above ``AUTOMTL_INMEMORY_MB``) takes this path:

1. the split: a row is a validation row when a stable hash of its ``data.group``
   column (else of the whole row) falls below ``valid_fraction``, so every
   pass, process and worker puts each row on the same side, with no list of rows;
2. the plugins (encodings, vocabularies, class lists) are fitted on a bounded
   uniform sample of the training rows (``data.sample_rows``, recorded in the
   manifest);
3. one pass over the files, batch by batch, turns rows into model inputs and
   targets; inputs go to ``.npy`` files in the run's cache (shared by its trial
   processes and workers, rebuilt only when the files or the experiment change),
   read by ``tf.data`` batch by batch as :class:`~automtl.data.streamed.MappedArray`.

Memory holds one batch of rows, the sample, and the targets and masks (a few
bytes a row); inputs stay on disk and in the page cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from automtl.config import Experiment
from automtl.data.arrays import Arrays, Prepared, check_finite, check_model_inputs, to_arrays
from automtl.data.parquet import dataset_files, is_parquet, iter_batches, iter_frames, row_counts
from automtl.data.split import group_labels
from automtl.data.streamed import MappedArray
from automtl.data.table import Table, from_frame
from automtl.errors import ConfigError, DataError

#: Rows read from the files at once.
BATCH_ROWS = 65_536
CACHE_VERSION = 1


def valid_rows(table: Table, fraction: float, seed: int, group: Any = None) -> np.ndarray:
    """Whether each row is a validation row: a stable hash of its group (or of the row) below ``fraction``."""
    import pandas as pd

    if group is not None:
        keys = pd.Series(group_labels(table, group).astype(str))
        hashed = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    else:
        frame = pd.DataFrame({k: (v if v.dtype != object else v.astype(str)) for k, v in table.columns.items()
                              if v.ndim == 1})
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    mixed = pd.util.hash_array(hashed ^ np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64))  # the split seed moves rows
    return (mixed >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


def _check_streamable(exp: Experiment, encoders: list) -> None:
    """Every input must say it streams (:attr:`automtl.api.InputEncoder.streams_from_table`)."""
    other = [f"{e.name} ({e.type_name})" for e in encoders if not e.streams_from_table]
    if other:
        raise ConfigError(f"data.stream: inputs {', '.join(other)} cannot stream from a table (their type does not "
                          "declare streams_from_table); inputs that read files of their own, such as images, stream "
                          "from those files already: remove data.stream")
    if exp.data.folds is not None:
        raise ConfigError("data.stream: a streamed table is split by a hash, not cross-validated; remove data.folds")


def _fingerprint(exp: Experiment, files: list[Path]) -> str:
    """What the cache depends on: the files (path, size, time), the data settings, the inputs and tasks."""
    parts = [CACHE_VERSION, [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files],
             exp.data.model_dump(mode="json", exclude={"stream"}),
             [i.model_dump(mode="json") for i in exp.inputs], [t.model_dump(mode="json") for t in exp.tasks]]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sample_table(files: list[Path], exp: Experiment, source: str) -> Table:
    """A uniform sample of up to ``data.sample_rows`` training rows (seeded: the same in every process)."""
    import pandas as pd

    data = exp.data
    total = sum(row_counts(files))
    wanted = min(total, math.ceil(data.sample_rows / (1 - data.valid_fraction) * 1.05) + 16)
    picks = np.sort(np.random.default_rng(data.split_seed).choice(total, size=wanted, replace=False))
    frames, ids = [], []
    for batch, start, _ in iter_batches(files, BATCH_ROWS):
        lo, hi = np.searchsorted(picks, [start, start + batch.num_rows])
        if hi > lo:  # only the picked rows become Python objects
            frames.append(batch.take(picks[lo:hi] - start).to_pandas())
            ids.append(picks[lo:hi])
    sample = from_frame(pd.concat(frames, ignore_index=True), source, np.concatenate(ids))
    train = np.flatnonzero(~valid_rows(sample, data.valid_fraction, data.split_seed, data.group_rule))
    return sample.take(train[: data.sample_rows], f"{source} (sample of training rows)")


def _cached_sample(files: list[Path], exp: Experiment, source: str, path: Path) -> Table:
    """The sample, read once per cache and kept beside it (every trial process fits the same plugins fast)."""
    import pandas as pd

    if path.is_file():
        frame = pd.read_parquet(path)
        return from_frame(frame.drop(columns="__row__"), f"{source} (sample of training rows)",
                          frame["__row__"].to_numpy())
    sample = sample_table(files, exp, source)
    frame = pd.DataFrame({**sample.columns, "__row__": sample.row_ids})
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    frame.to_parquet(tmp)
    os.replace(tmp, path)
    return sample


def _bytes(values: np.ndarray) -> np.ndarray:
    """Text cells as fixed-width UTF-8 bytes, so they can live in a ``.npy`` file (tf.string reads them)."""
    if values.dtype != object:
        return values
    if values.ndim != 1 or any(not isinstance(v, str) for v in values[:100]):
        raise DataError("data.stream: an input is neither numbers nor text; it cannot stream from a table")
    try:
        return values.astype("S")  # ASCII text: numpy's own loop
    except UnicodeEncodeError:
        return np.char.encode(values.astype(str), "utf-8")


def _write_pass(files: list[Path], exp: Experiment, encoders: list, tasks: list, folder: Path,
                keep_unlabelled: bool) -> dict[str, int]:
    """Encode every row once, batch by batch, into ``folder/{train,valid}/chunk-*.npz``; rows per side."""
    data = exp.data
    names = [t.name for t in tasks]
    counts = {"train": 0, "valid": 0}
    chunk = 0
    for frame, start, path in iter_frames(files, BATCH_ROWS):
        table = from_frame(frame, f"{path}", np.arange(start, start + len(frame)))
        is_valid = valid_rows(table, data.valid_fraction, data.split_seed, data.group_rule)
        for side, rows in (("train", np.flatnonzero(~is_valid)), ("valid", np.flatnonzero(is_valid))):
            if not len(rows):
                continue
            part = table.take(rows)
            arrays = to_arrays(encoders, tasks, part)
            check_finite(encoders, tasks, arrays, part)
            if not keep_unlabelled:
                arrays = arrays.only(names)
            out = folder / side
            out.mkdir(parents=True, exist_ok=True)
            np.savez(out / f"chunk-{chunk:06d}.npz", **{f"x.{k}": _bytes(v) for k, v in arrays.x.items()},
                     **{f"y.{k}": v for k, v in arrays.y.items()}, **{f"mask.{k}": v for k, v in arrays.mask.items()})
            counts[side] += len(arrays)
        chunk += 1
    return counts


def _consolidate(side: Path) -> None:
    """The chunks of one side as one ``.npy`` file per array (text padded to the widest cell), chunks removed."""
    chunks = sorted(side.glob("chunk-*.npz"))
    if not chunks:
        return
    with np.load(chunks[0]) as first:
        keys = list(first.files)
    shapes: dict[str, list] = {k: [] for k in keys}
    for c in chunks:
        with np.load(c) as z:
            for k in keys:
                shapes[k].append((z[k].shape, z[k].dtype))
    for k in keys:
        dtype = np.result_type(*[d for _, d in shapes[k]])
        total = sum(s[0] for s, _ in shapes[k])
        out = np.lib.format.open_memmap(side / f"{k}.npy", mode="w+", dtype=dtype, shape=(total, *shapes[k][0][0][1:]))
        at = 0
        for c in chunks:
            with np.load(c) as z:
                values = z[k]
            out[at: at + len(values)] = values
            at += len(values)
        out.flush()
        del out
    for c in chunks:
        c.unlink()


def _load_side(side: Path, n: int) -> Arrays | None:
    if n == 0:
        return None
    x, y, mask = {}, {}, {}
    for path in sorted(side.glob("*.npy")):
        kind, _, name = path.stem.partition(".")
        if kind == "x":
            x[name] = MappedArray(np.load(path, mmap_mode="r"), str(path))
        elif kind == "y":
            y[name] = np.load(path)
        else:
            mask[name] = np.load(path)
    return Arrays(x, y, mask)


def build_cache(exp: Experiment, encoders: list, tasks: list, files: list[Path], cache: Path,
                keep_unlabelled: bool) -> dict[str, int]:
    """Write the encoded rows once (a temporary folder renamed into place: concurrent processes are safe)."""
    done = cache / "rows.json"
    if done.is_file():
        return json.loads(done.read_text())
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = _write_pass(files, exp, encoders, tasks, tmp, keep_unlabelled)
        for side in ("train", "valid"):
            _consolidate(tmp / side)
        (tmp / "rows.json").write_text(json.dumps(counts))
        try:
            tmp.rename(cache)
        except OSError:  # another process finished first: use its copy
            if not done.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return json.loads(done.read_text())


def prepare_streamed(exp: Experiment, encoders: list, tasks: list, run_dir: Path | None = None,
                     keep_unlabelled: bool = False) -> Prepared:
    """:func:`automtl.data.prepare.prepare` for a table read in batches (see the module's notes)."""
    _check_streamable(exp, encoders)
    train_path = exp.path(exp.data.train)
    if not is_parquet(train_path):
        raise ConfigError(f"data.stream reads Parquet files (a file, a folder or a glob); data.train is {train_path} "
                          "(write it as Parquet, e.g. pandas.read_csv(...).to_parquet(...))")
    if exp.data.valid is not None:
        raise ConfigError("data.stream: the validation rows are split off the training table by a hash; remove "
                          "data.valid (or data.stream)")
    files = dataset_files(train_path, "training data")
    key = _fingerprint(exp, files)
    cache = Path(run_dir or exp.run_dir).resolve() / "cache" / f"table-{key}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    sample = _cached_sample(files, exp, str(train_path), cache.with_name(f"table-{key}.sample.parquet"))
    if not len(sample):
        raise DataError(f"{train_path}: no training rows left after the validation split")
    for plugin in (*encoders, *tasks):
        plugin.prepare(sample)  # fitted on training rows only: the sample holds none of the validation rows
    check_model_inputs(encoders)
    counts = build_cache(exp, encoders, tasks, files, cache, keep_unlabelled)
    train, valid = _load_side(cache / "train", counts["train"]), _load_side(cache / "valid", counts["valid"])
    names = [t.name for t in tasks]
    for side, arrays in (("training", train), ("validation", valid)):
        if arrays is None or not len(arrays):
            raise DataError(f"{train_path}: the {side} split holds no labelled rows (data.valid_fraction "
                            f"{exp.data.valid_fraction})")
        for name in names:
            if not arrays.mask[name].any():
                raise DataError(f"{train_path}: task '{name}' has no labelled rows in the {side} split")
    split = f"hash of data.group '{exp.data.group_rule.column}'" if exp.data.group_rule else "hash of each row"
    stream = {"files": len(files), "rows": counts, "sample_rows": len(sample), "split": split,
              "valid_fraction": exp.data.valid_fraction}
    return Prepared(experiment=exp, encoders=encoders, tasks=tasks, train=train, valid=valid,
                    importance={t.name: t.importance for t in exp.tasks},
                    sources={"train": str(train_path), "valid": f"{split} of the training table", "stream": stream})
