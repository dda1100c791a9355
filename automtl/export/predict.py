"""``automtl predict MODEL_DIR --data FILE --out FILE``: run an exported model over a data file.

The manifest (``automtl.json``) says how the data maps to the SavedModel's raw
inputs: a tabular input's numeric matrix lists its ``columns`` (stacked in that
order), a categorical input has ``columns: [col]`` (strings), an NPZ input has
``array`` (``None`` dimensions match any size). An input plugin may map its own
input (:meth:`automtl.api.InputEncoder.serving_arrays`): the image input reads
the image files named in a column, or every image of a ``--data`` folder, and
decodes them batch by batch as in training. The output holds one column (or
field, or array) per task output, named ``<task>.<output>``; vector outputs
such as class probabilities are one list per row (a JSON list in CSV cells);
detection outputs are one list of boxes per image (``<task>.detections``), or
a COCO results file with ``--format coco``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automtl.data.streamed import is_streamed
from automtl.errors import AutomtlError, ConfigError, DataError, MissingColumns

DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".npz")
OUT_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".npz")
#: Image files ``tf.io.decode_image`` reads, listed from a ``--data`` folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: The column a folder's (or a single image's) file names go into.
PATH_COLUMN = "image_path"
FORMATS = ("table", "coco")
DEFAULT_BATCH = 1024
IMAGE_BATCH = 64
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


@dataclass
class Data:
    """A data source's columns, its row count, and whether it is a folder (or file) of images."""

    columns: dict[str, np.ndarray]
    rows: int
    images: bool = False


def read_data(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """Columns (or NPZ arrays) by name, and the number of rows."""
    data = read_source(path)
    return data.columns, data.rows


def read_source(path: Path) -> Data:
    """A data file, a folder of images (one row per image file, sorted, sub-folders included) or one image."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return Data({PATH_COLUMN: np.array(files, dtype=object)}, len(files), images=True)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if suffix in IMAGE_SUFFIXES:
        return Data({PATH_COLUMN: np.array([path.name], dtype=object)}, 1, images=True)
    if suffix not in DATA_SUFFIXES:
        return _plugin_table(path, suffix)
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
    return Data(columns, lengths.pop())


def _plugin_table(path: Path, suffix: str) -> Data:
    """A file type a reader plugin reads (a COCO JSON file), as in training."""
    from automtl.data.readers import plugin_readers, read_table, suffixes

    readers = plugin_readers()
    if not any(suffix in r.suffixes for r in readers):
        raise DataError(f"{path}: unsupported data file type '{suffix}'; expected one of "
                        f"{', '.join(suffixes(readers))}, an image file or a folder of images")
    table = read_table(path)
    return Data(dict(table.columns), len(table))


def model_inputs(manifest: dict[str, Any], data: dict[str, np.ndarray], source: str,
                 root: Path | None = None, facts: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Map the data to the SavedModel's named inputs, as the manifest describes them. An input plugin
    may map its own (image files); what it says about each row lands in ``facts[input name]``."""
    out: dict[str, Any] = {}
    missing: list[MissingColumns] = []  # every input's missing columns in one error
    for spec in manifest["inputs"]:
        name, dtype = spec["name"], spec["dtype"]
        try:
            mapped = _plugin_input(spec, data, source, root)
        except MissingColumns as exc:
            missing.append(exc)
            continue
        if mapped is not None:
            out[name] = mapped[0]
            if facts is not None:
                facts[name] = mapped[1]
            continue
        if "array" in spec:
            out[name] = _array_input(spec, data, source)
            continue
        cols = spec.get("columns") or _one_column(spec, data)
        absent = [c for c in cols if c not in data]
        if absent:
            missing.append(MissingColumns(source, [(c, f"model input '{name}'") for c in absent], list(data)))
            continue
        if dtype == "string":
            out[name] = np.array([_text(v) for v in data[cols[0]]], dtype=object)
        else:
            values = np.column_stack([_numeric(data[c], c, source) for c in cols]).astype(dtype)
            shape = [d for d in spec.get("shape", [None])[1:]]
            out[name] = values.reshape(len(values), *shape) if shape else values[:, 0]
    if missing:
        raise MissingColumns.merged(missing)
    return out


def _one_column(spec: dict[str, Any], data: dict[str, np.ndarray]) -> list[str]:
    """The column of a one-column input (a text input's ``column``, as it was trained on); the
    input's own name when the data has that column instead."""
    column = spec.get("column")
    if column and (column in data or spec["name"] not in data):
        return [str(column)]
    return [spec["name"]]


def _plugin_input(spec: dict[str, Any], data: dict[str, np.ndarray], source: str,
                  root: Path | None) -> tuple[Any, dict[str, np.ndarray]] | None:
    if not spec.get("type"):
        return None
    from automtl.core import plugins

    try:
        cls = plugins.load("input", spec["type"], where=f"model input '{spec['name']}'")
    except ConfigError:
        return None  # a plugin not installed here: map the columns as automtl does
    hook = getattr(cls, "serving_arrays", None)
    return hook(spec, data, Path(source), root) if hook is not None else None


def _array_input(spec: dict[str, Any], data: dict[str, np.ndarray], source: str) -> np.ndarray:
    key = spec["array"]
    if key not in data:
        raise DataError(f"{source}: missing array '{key}', needed by model input '{spec['name']}' "
                        f"(arrays present: {', '.join(data)})")
    values = np.asarray(data[key])
    expected = tuple(spec.get("shape", [None])[1:])
    if spec.get("image") and values.ndim == len(expected) and expected[-1] == 1:
        values = values[..., None]  # grey images without their channel axis
    fits = values.ndim == len(expected) + 1 and all(e is None or e == v for e, v in zip(expected, values.shape[1:]))
    if not fits:
        shown = tuple("any" if e is None else e for e in expected)
        raise DataError(f"{source}: array '{key}' has shape {tuple(values.shape[1:])} per row, "
                        f"expected {shown} for model input '{spec['name']}'")
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
            stop = min(rows, start + batch_size)
            batch = {k: tf.constant(v.take(np.arange(start, stop)) if is_streamed(v) else v[start:stop])
                     for k, v in inputs.items()}
            chunks.append({k: t.numpy() for k, t in serve(**batch).items()})
            if bar is not None:
                bar.update(task, advance=min(batch_size, rows - start))
    finally:
        if bar is not None:
            bar.stop()
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


#: How ``predict`` writes a vector output whose entries the manifest names (class probabilities):
#: one column per entry (``<task>.p.<class>``), or one list per row.
VECTOR_FORMS = ("columns", "list")


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


def output_order(manifest: dict[str, Any], outputs: dict[str, np.ndarray]) -> list[str]:
    ordered = [o for t in manifest["tasks"] for o in t.get("outputs", []) if o in outputs]
    return ordered + sorted(set(outputs) - set(ordered))


def write_outputs(out: Path, outputs: dict[str, np.ndarray], order: Sequence[str],
                  keep: dict[str, np.ndarray]) -> Path:
    """One column per output; vectors as one list per row; strings decoded from bytes."""
    out = Path(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    decoded = {k: v if _holds_lists(v) else _decode(v) for k, v in outputs.items()}
    if suffix == ".npz":  # text as unicode arrays, so np.load needs no pickle
        arrays = {k: np.asarray(v) for k, v in keep.items()} | {k: decoded[k] for k in order}
        np.savez(out, **{k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()})
        return out
    import pandas as pd

    frame = pd.DataFrame({k: list(v) if np.ndim(v) > 1 else v for k, v in keep.items()})
    for key in order:
        v = decoded[key]
        if _holds_lists(v):  # one list (of detections) per row
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


def _decode(v: np.ndarray) -> np.ndarray:
    if v.dtype.kind in "SO":
        return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b), otypes=[object])(v)
    return v


def detection_tasks(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Manifest tasks whose outputs are boxes per image (they say how in ``detections``)."""
    return [t for t in manifest["tasks"] if isinstance(t.get("detections"), dict)]


def rescale_boxes(manifest: dict[str, Any], outputs: dict[str, np.ndarray],
                  facts: dict[str, dict[str, np.ndarray]]) -> None:
    """Boxes come back in the pixels of the image the model was served; images that predict resized to the
    training size get theirs back in their own pixels (each image's width and height from ``facts``)."""
    specs = {s["name"]: s for s in manifest["inputs"]}
    for task in detection_tasks(manifest):
        d = task["detections"]
        image = d.get("image_input") or next((n for n, s in specs.items() if s.get("image")), None)
        sizes = facts.get(image or "")
        key = f"{task['name']}.{d['boxes']}"
        if not sizes or key not in outputs or "width" not in sizes:
            continue
        h, w = specs[image]["size"]
        scale = np.stack([sizes["width"] / w, sizes["height"] / h] * 2, axis=-1).astype(np.float32)
        outputs[key] = outputs[key] * scale[:, None, :]


def detection_lists(task: dict[str, Any], outputs: dict[str, np.ndarray]) -> list[list[dict[str, Any]]]:
    """One list of ``{box, score, label, class_id}`` per image: the real detections, best first."""
    d, name = task["detections"], task["name"]
    boxes, scores = outputs[f"{name}.{d['boxes']}"], outputs[f"{name}.{d['scores']}"]
    labels, ids = _decode(outputs[f"{name}.{d['labels']}"]), outputs[f"{name}.{d['class_ids']}"]
    count = outputs[f"{name}.{d['count']}"]
    return [[{"box": [round(float(v), 2) for v in boxes[i, j]], "score": round(float(scores[i, j]), 5),
              "label": str(labels[i, j]), "class_id": int(ids[i, j])} for j in range(int(count[i]))]
            for i in range(len(count))]


def coco_results(task: dict[str, Any], outputs: dict[str, np.ndarray], image_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """COCO detection results (``image_id, category_id, bbox [x, y, w, h], score``), as pycocotools' ``loadRes`` reads."""
    categories = task.get("category_ids") or list(range(1, len(task.get("classes", [])) + 1))
    results = []
    for image_id, dets in zip(image_ids, detection_lists(task, outputs)):
        for det in dets:
            x0, y0, x1, y1 = det["box"]
            results.append({"image_id": image_id, "category_id": categories[det["class_id"]],
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": det["score"]})
    return results


def image_ids(data: dict[str, np.ndarray], rows: int) -> list[Any]:
    """Each row's COCO image id: an ``image_id`` column, else numeric file names, else the row number (from 1)."""
    if "image_id" in data:
        return [v.item() if isinstance(v, np.generic) else v for v in data["image_id"]]
    if PATH_COLUMN in data:
        stems = [Path(str(p)).stem for p in data[PATH_COLUMN]]
        if all(s.isdigit() for s in stems):
            return [int(s) for s in stems]
    return list(range(1, rows + 1))


def check_out(out: Path, data_path: Path, format: str = "table") -> Path:
    """``--out`` can be written and overwrites nothing a user or a run needs; checked before any work."""
    out = Path(out).expanduser()
    if format not in FORMATS:
        raise AutomtlError(f"--format {format}: expected one of {', '.join(FORMATS)}")
    if format == "coco" and out.suffix.lower() != ".json":
        raise AutomtlError(f"--out {out}: --format coco writes a JSON file; give a .json path")
    if format == "table" and out.suffix.lower() not in OUT_SUFFIXES:
        raise AutomtlError(f"--out {out}: unsupported output type '{out.suffix}'; expected one of {', '.join(OUT_SUFFIXES)}")
    if out.exists() and Path(data_path).exists() and out.resolve() == Path(data_path).resolve():
        raise AutomtlError(f"--out {out} is the --data file; write the predictions to another file")
    from automtl.rundir.folder import check_output_file, refuse_inside_run

    refuse_inside_run(out, beside=f"predictions{out.suffix}")
    return check_output_file(out)


@dataclass
class PredictPlan:
    """Everything checked and read, ready to run through the model."""

    model_dir: Path
    manifest: dict[str, Any]
    inputs: dict[str, Any]
    rows: int
    out: Path
    keep: dict[str, np.ndarray]
    #: what an input plugin says about each row (an image's own width and height), by input name
    facts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: COCO image id of each row (``--format coco`` only)
    image_ids: list[Any] = field(default_factory=list)
    batch_size: int = DEFAULT_BATCH


def plan_predict(model_dir: Path, data_path: Path, out: Path, keep: Sequence[str] = (), *,
                 root: Path | None = None, format: str = "table", batch_size: int | None = None) -> PredictPlan:
    """Read and map the data and check the output path: every user mistake is found here, before TensorFlow."""
    out = check_out(out, data_path, format)
    manifest = load_manifest(model_dir)
    detections = detection_tasks(manifest)
    if format == "coco" and len(detections) != 1:
        raise AutomtlError(f"{model_dir}: --format coco needs a model with one detection task; this one has "
                           f"{len(detections)}")
    source = read_source(data_path)
    data, rows = source.columns, source.rows
    if source.images:
        _route_folder(manifest, data, data_path)
    missing = [c for c in keep if c not in data]
    if missing:
        raise DataError(f"{data_path}: --keep column(s) not found: {', '.join(missing)}")
    if root is not None and not Path(root).is_dir():
        raise DataError(f"--root {root}: folder not found")
    facts: dict[str, dict[str, np.ndarray]] = {}
    inputs = model_inputs(manifest, data, str(data_path), root, facts)
    if batch_size is None:  # images are large: fewer of them per batch
        batch_size = IMAGE_BATCH if any(s.get("image") for s in manifest["inputs"]) else DEFAULT_BATCH
    kept = {c: data[c] for c in keep}
    if source.images and PATH_COLUMN not in kept:
        kept = {PATH_COLUMN: data[PATH_COLUMN], **kept}  # which row is which image
    ids = image_ids(data, rows) if format == "coco" else []
    return PredictPlan(Path(model_dir), manifest, inputs, rows, out, kept, facts, ids, batch_size)


def predict(model_dir: Path, data_path: Path, out: Path, *, batch_size: int | None = None,
            keep: Sequence[str] = (), console: Any = None, root: Path | None = None,
            format: str = "table", vectors: str = "columns") -> PredictSummary:
    """Check and read (no TensorFlow), then serve and write; ``vectors``: named vector outputs (class
    probabilities) as one column per entry (``columns``) or one list per row (``list``)."""
    if vectors not in VECTOR_FORMS:
        raise AutomtlError(f"--probabilities {vectors}: expected one of {', '.join(VECTOR_FORMS)}")
    import time

    from automtl.tfimport import import_tensorflow_quietly

    started = time.perf_counter()
    plan = plan_predict(model_dir, data_path, out, keep, root=root, format=format, batch_size=batch_size)
    import_tensorflow_quietly()
    outputs = run_model(plan.model_dir, plan.inputs, plan.rows, plan.batch_size, console)
    rescale_boxes(plan.manifest, outputs, plan.facts)
    order = output_order(plan.manifest, outputs)
    detections = detection_tasks(plan.manifest)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    if format == "coco":
        plan.out.write_text(json.dumps(coco_results(detections[0], outputs, plan.image_ids), default=str))
        return PredictSummary(plan.rows, [f"{detections[0]['name']} (COCO results)"], plan.out,
                              time.perf_counter() - started)
    if plan.out.suffix.lower() != ".npz":  # boxes per image as one list, not padded arrays
        for task in detections:
            outputs[f"{task['name']}.detections"] = _object_array(detection_lists(task, outputs))
            d, prefix = task["detections"], task["name"] + "."
            padded = {prefix + d[k] for k in ("boxes", "scores", "labels", "class_ids")}
            order = [o for o in order if o not in padded] + [prefix + "detections"]
    if vectors == "columns":
        order = name_columns(plan.manifest, outputs, order)
    write_outputs(plan.out, outputs, order, plan.keep)
    return PredictSummary(plan.rows, order, plan.out, time.perf_counter() - started)


def _route_folder(manifest: dict[str, Any], data: dict[str, np.ndarray], path: Path) -> None:
    """A folder (or one image file) feeds the model's one image input, under the column that input reads.

    Whatever the model was trained from: an input trained on NPZ pixel arrays (or a COCO file) reads the
    files' paths too (the manifest in memory names the column; its input plugin decodes them)."""
    images = [s for s in manifest["inputs"] if s.get("image")]
    if len(images) != 1 or len(manifest["inputs"]) != 1:
        names = ", ".join(s["name"] for s in manifest["inputs"])
        raise DataError(f"{path}: a folder or file of images feeds a model with one image input; "
                        f"this model's inputs are {names}: give a data file with their columns")
    spec = images[0]
    if not spec.get("column"):
        spec["column"] = PATH_COLUMN
    data[spec["column"]] = data[PATH_COLUMN]


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
