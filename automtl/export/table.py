"""``automtl predict --format table`` (the default): one column per task output, in CSV, Parquet, JSON Lines or NPZ.

Vector outputs such as class probabilities are one column per entry (or one
list per row: a JSON list in CSV cells); a task may give an output as one list
per row (:meth:`automtl.api.Task.list_outputs`: a variable number of results
per row) in every file type but NPZ, which keeps the padded arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automtl.core.predictions import PredictionFormat, Predictions
from automtl.export.predict import installed_plugin

OUT_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".npz")


class TablePredictions(PredictionFormat):
    suffixes = OUT_SUFFIXES
    writes = "a table"
    doc = "one column per task output (CSV, Parquet, JSON Lines or NPZ)"

    def write(self, out: Path, predictions: Predictions) -> list[str]:
        outputs, order = dict(predictions.outputs), list(predictions.order)
        if Path(out).suffix.lower() != ".npz":  # lists per row where a task gives them (not padded arrays)
            order = task_lists(predictions.manifest, outputs, order)
        if predictions.vectors == "columns":
            order = name_columns(predictions.manifest, outputs, order)
        write_outputs(out, outputs, order, predictions.keep)
        return order


def task_lists(manifest: dict[str, Any], outputs: dict[str, np.ndarray], order: list[str]) -> list[str]:
    """Each installed task's :meth:`~automtl.api.Task.list_outputs`, applied to ``outputs``: dropped outputs
    leave the order, new ones join at its end; returns the new order."""
    for task in manifest["tasks"]:
        cls = installed_plugin("task", task.get("type"), f"task '{task.get('name')}'")
        if cls is None:
            continue
        for key, values in cls.list_outputs(task, outputs).items():
            if values is None:
                outputs.pop(key, None)
                order = [o for o in order if o != key]
            else:
                outputs[key] = values
                order = order if key in order else [*order, key]
    return order


def name_columns(manifest: dict[str, Any], outputs: dict[str, np.ndarray], order: list[str]) -> list[str]:
    """Split each vector output that a task's manifest names entry by entry (``output_columns``:
    ``{output: {"prefix": "p", "names": [...]}}``) into one column per entry, ``<task>.<prefix>.<name>``,
    in place of the output; returns the new column order."""
    new_order = list(order)
    for task in manifest["tasks"]:
        for output, spec in (task.get("output_columns") or {}).items():
            key = f"{task['name']}.{output}"
            values = outputs.get(key)
            if values is None or np.ndim(values) != 2 or values.shape[1] != len(spec["names"]):
                continue
            columns = [f"{task['name']}.{spec['prefix']}.{name}" for name in spec["names"]]
            for j, column in enumerate(columns):
                outputs[column] = values[:, j]
            del outputs[key]
            at = new_order.index(key)
            new_order[at:at + 1] = columns
    return new_order


def write_outputs(out: Path, outputs: dict[str, np.ndarray], order: Sequence[str],
                  keep: dict[str, np.ndarray]) -> Path:
    """One column per output; vectors as one list per row; strings decoded from bytes."""
    out = Path(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    decoded = {k: v if _holds_lists(v) else decode(v) for k, v in outputs.items()}
    if suffix == ".npz":  # text as unicode arrays, so np.load needs no pickle
        arrays = {k: np.asarray(v) for k, v in keep.items()} | {k: decoded[k] for k in order}
        np.savez(out, **{k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()})
        return out
    import pandas as pd

    frame = pd.DataFrame({k: list(v) if np.ndim(v) > 1 else v for k, v in keep.items()})
    for key in order:
        v = decoded[key]
        if _holds_lists(v):  # one list per row
            frame[key] = [json.dumps(x) for x in v] if suffix == ".csv" else list(v)
        elif v.ndim > 1:
            lists = [row.tolist() for row in v]
            frame[key] = [json.dumps(x) for x in lists] if suffix == ".csv" else lists
        else:
            frame[key] = v
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(out, orient="records", lines=True)
    else:
        frame.to_parquet(out, index=False)
    return out


def _holds_lists(v: np.ndarray) -> bool:
    return v.dtype == object and v.ndim == 1 and len(v) > 0 and isinstance(v[0], list)


def decode(v: np.ndarray) -> np.ndarray:
    """Text outputs (bytes from TensorFlow) as Python strings; other outputs unchanged."""
    if v.dtype.kind in "SO":
        return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b), otypes=[object])(v)
    return v
