"""``automtl predict MODEL_DIR --data FILE --out FILE``: run an exported model over a data file.

The manifest (``automtl.json``) says how the data maps to the SavedModel's raw
inputs: a tabular input's numeric matrix lists its ``columns`` (stacked in that
order), a categorical input has ``columns: [col]`` (strings), an NPZ input has
``array``. The output holds one column (or field, or array) per task output,
named ``<task>.<output>``; vector outputs such as class probabilities are one
list per row (a JSON list in CSV cells).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automtl.errors import AutomtlError, DataError

DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".npz")
OUT_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Inputs with more batches than this get a progress bar (on a terminal).
BAR_MIN_BATCHES = 2


@dataclass
class PredictSummary:
    rows: int
    outputs: list[str]
    out: Path
    seconds: float


def saved_model_dir(model_dir: Path) -> Path | None:
    """``saved_model/`` of an export, or the folder itself in the TF Serving layout (``--layout tf-serving``)."""
    model_dir = Path(model_dir)
    if (model_dir / "saved_model").is_dir():
        return model_dir / "saved_model"
    return model_dir if (model_dir / "saved_model.pb").exists() else None


def load_manifest(model_dir: Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    path = model_dir / "automtl.json"
    if not model_dir.is_dir():
        raise AutomtlError(f"model folder not found: {model_dir}")
    if not path.exists() or saved_model_dir(model_dir) is None:
        raise AutomtlError(f"{model_dir}: expected an exported model folder (automtl.json and saved_model/), "
                           "such as RUN_DIR/best or the --out of `automtl export`")
    try:
        manifest = json.loads(path.read_text())
        manifest["inputs"], manifest["tasks"]  # noqa: B018 - presence check
    except (ValueError, KeyError, TypeError) as exc:
        raise AutomtlError(f"{path}: not a readable automtl manifest: {exc}") from None
    return manifest


def read_data(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """Columns (or NPZ arrays) by name, and the number of rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in IMAGE_SUFFIXES:
        raise DataError(f"{path}: image inputs are not supported by `automtl predict` yet (they come with the "
                        f"image input of the detection plugin); supported data files: {', '.join(DATA_SUFFIXES)}")
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if suffix not in DATA_SUFFIXES:
        raise DataError(f"{path}: unsupported data file type '{suffix}'; expected one of {', '.join(DATA_SUFFIXES)}")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                columns = {k: npz[k] for k in npz.files}
        else:
            import pandas as pd

            if suffix == ".csv":
                frame = pd.read_csv(path)
            elif suffix in (".jsonl", ".ndjson"):
                frame = pd.read_json(path, lines=True)
            else:
                frame = pd.read_parquet(path)
            columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    except Exception as exc:  # parser errors from pandas/pyarrow/numpy
        raise DataError(f"{path}: cannot read data file: {exc}") from None
    lengths = {len(v) for v in columns.values() if np.ndim(v) > 0}
    if not columns or lengths == {0}:
        raise DataError(f"{path}: the data file holds no rows")
    if len(lengths) > 1:
        raise DataError(f"{path}: arrays have different numbers of rows: {sorted(lengths)}")
    return columns, lengths.pop()


def model_inputs(manifest: dict[str, Any], data: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Map the data to the SavedModel's named inputs, as the manifest describes them."""
    out: dict[str, np.ndarray] = {}
    for spec in manifest["inputs"]:
        name, dtype = spec["name"], spec["dtype"]
        if "array" in spec:
            out[name] = _array_input(spec, data, source)
            continue
        cols = spec.get("columns") or [name]
        missing = [c for c in cols if c not in data]
        if missing:
            shown = ", ".join(repr(c) for c in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(f"{source}: missing column(s) {shown}, needed by model input '{name}' "
                            f"(columns present: {', '.join(list(data)[:10])}{', ...' if len(data) > 10 else ''})")
        if dtype == "string":
            out[name] = np.array([_text(v) for v in data[cols[0]]], dtype=object)
        else:
            values = np.column_stack([_numeric(data[c], c, source) for c in cols]).astype(dtype)
            shape = [d for d in spec.get("shape", [None])[1:]]
            out[name] = values.reshape(len(values), *shape) if shape else values[:, 0]
    return out


def _array_input(spec: dict[str, Any], data: dict[str, np.ndarray], source: str) -> np.ndarray:
    key = spec["array"]
    if key not in data:
        raise DataError(f"{source}: missing array '{key}', needed by model input '{spec['name']}' "
                        f"(arrays present: {', '.join(data)})")
    values = np.asarray(data[key])
    expected = tuple(spec.get("shape", [None])[1:])
    if tuple(values.shape[1:]) != expected:
        raise DataError(f"{source}: array '{key}' has shape {tuple(values.shape[1:])} per row, "
                        f"expected {expected} for model input '{spec['name']}'")
    try:
        return values.astype(spec["dtype"])
    except (TypeError, ValueError):
        raise DataError(f"{source}: array '{key}' cannot be read as {spec['dtype']}") from None


def _numeric(values: np.ndarray, column: str, source: str) -> np.ndarray:
    """Floats; empty cells become NaN (the model imputes them), text is an error naming the row."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{source}: column '{column}', row {i + 1}: {v!r} is not a number") from None
    return out


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def run_model(model_dir: Path, inputs: dict[str, np.ndarray], rows: int, batch_size: int,
              console: Any = None) -> dict[str, np.ndarray]:
    """Serve ``inputs`` through the SavedModel in batches; a bar on a terminal for large inputs."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved_model_dir(model_dir))).signatures["serving_default"]
    starts = range(0, rows, batch_size)
    chunks: list[dict[str, np.ndarray]] = []
    bar = None
    if console is not None and console.is_terminal and len(starts) >= BAR_MIN_BATCHES:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                       TimeElapsedColumn(), console=console)
        task = bar.add_task("predict", total=rows)
        bar.start()
    try:
        for start in starts:
            batch = {k: tf.constant(v[start:start + batch_size]) for k, v in inputs.items()}
            chunks.append({k: t.numpy() for k, t in serve(**batch).items()})
            if bar is not None:
                bar.update(task, advance=min(batch_size, rows - start))
    finally:
        if bar is not None:
            bar.stop()
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def output_order(manifest: dict[str, Any], outputs: dict[str, np.ndarray]) -> list[str]:
    ordered = [o for t in manifest["tasks"] for o in t.get("outputs", []) if o in outputs]
    return ordered + sorted(set(outputs) - set(ordered))


def write_outputs(out: Path, outputs: dict[str, np.ndarray], order: Sequence[str],
                  keep: dict[str, np.ndarray]) -> Path:
    """One column per output; vectors as one list per row; strings decoded from bytes."""
    out = Path(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    decoded = {k: _decode(v) for k, v in outputs.items()}
    if suffix == ".npz":  # text as unicode arrays, so np.load needs no pickle
        arrays = {k: np.asarray(v) for k, v in keep.items()} | {k: decoded[k] for k in order}
        np.savez(out, **{k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()})
        return out
    import pandas as pd

    frame = pd.DataFrame({k: list(v) if np.ndim(v) > 1 else v for k, v in keep.items()})
    for key in order:
        v = decoded[key]
        if v.ndim > 1:
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


def _decode(v: np.ndarray) -> np.ndarray:
    if v.dtype.kind in "SO":
        return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b), otypes=[object])(v)
    return v


def check_out(out: Path, data_path: Path) -> Path:
    """``--out`` can be written and overwrites nothing a user or a run needs; checked before any work."""
    out = Path(out).expanduser()
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise AutomtlError(f"--out {out}: unsupported output type '{out.suffix}'; expected one of {', '.join(OUT_SUFFIXES)}")
    if out.exists() and Path(data_path).exists() and out.resolve() == Path(data_path).resolve():
        raise AutomtlError(f"--out {out} is the --data file; write the predictions to another file")
    from automtl.outputs.rundir import check_output_file

    return check_output_file(out)


@dataclass
class PredictPlan:
    """Everything checked and read, ready to run through the model."""

    model_dir: Path
    manifest: dict[str, Any]
    inputs: dict[str, np.ndarray]
    rows: int
    out: Path
    keep: dict[str, np.ndarray]


def plan_predict(model_dir: Path, data_path: Path, out: Path, keep: Sequence[str] = ()) -> PredictPlan:
    """Read and map the data and check the output path: every user mistake is found here, before TensorFlow."""
    out = check_out(out, data_path)
    manifest = load_manifest(model_dir)
    data, rows = read_data(data_path)
    missing = [c for c in keep if c not in data]
    if missing:
        raise DataError(f"{data_path}: --keep column(s) not found: {', '.join(missing)}")
    inputs = model_inputs(manifest, data, str(data_path))
    return PredictPlan(Path(model_dir), manifest, inputs, rows, out, {c: data[c] for c in keep})


def predict(model_dir: Path, data_path: Path, out: Path, *, batch_size: int = 1024,
            keep: Sequence[str] = (), console: Any = None) -> PredictSummary:
    """Check and read (no TensorFlow), then serve and write."""
    import time

    from automtl.tfimport import import_tensorflow_quietly

    started = time.perf_counter()
    plan = plan_predict(model_dir, data_path, out, keep)
    import_tensorflow_quietly()
    outputs = run_model(plan.model_dir, plan.inputs, plan.rows, batch_size, console)
    order = output_order(plan.manifest, outputs)
    write_outputs(plan.out, outputs, order, plan.keep)
    return PredictSummary(plan.rows, order, plan.out, time.perf_counter() - started)
