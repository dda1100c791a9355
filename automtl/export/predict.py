"""``automtl predict MODEL_DIR --data FILE --out FILE``: run an exported model over a data file.

The manifest (``automtl.json``) says how the data maps to the SavedModel's raw
inputs: a tabular input's numeric matrix lists its ``columns`` (stacked in that
order), a categorical input has ``columns: [col]`` (strings), an NPZ input has
``array`` (``None`` dimensions match any size). Input and task plugins take
part through hooks of :mod:`automtl.api`, each asked by the manifest entry's
``type``: an input may read a ``--data`` path that is no data file
(:meth:`~automtl.api.InputEncoder.serving_source`), map its own input
(:meth:`~automtl.api.InputEncoder.serving_arrays`) and ask for smaller batches
(``serving_batch``); a task may adjust its outputs after the model ran
(:meth:`~automtl.api.Task.serving_outputs`). The outputs are written by the
``--format`` chosen among the installed prediction formats
(:class:`~automtl.api.PredictionFormat`; ``table`` by default: one column per
task output, named ``<task>.<output>``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automtl.core.predictions import PredictionFormat, Predictions, ServingSource
from automtl.data.streamed import is_streamed
from automtl.errors import AutomtlError, ConfigError, DataError, MissingColumns

DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".npz")
DEFAULT_BATCH = 1024
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
    """A data source's columns, its row count, and the columns that say which row is which (an input
    plugin's source: a folder's file names), written beside the outputs."""

    columns: dict[str, np.ndarray]
    rows: int
    keep: tuple[str, ...] = ()


def read_data(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """Columns (or NPZ arrays) by name, and the number of rows."""
    data = read_source(path)
    return data.columns, data.rows


def read_source(path: Path, inputs: Sequence[dict[str, Any]] = ()) -> Data:
    """A data file, or a path an input plugin reads itself (asked with the model's manifest ``inputs``,
    which the plugin may fill in with the column it put the data in)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir() or suffix not in DATA_SUFFIXES:
        return _input_source(path, inputs)
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


def _input_source(path: Path, inputs: Sequence[dict[str, Any]]) -> Data:
    """The first input type that reads ``path`` itself (the model's own types first, then the other
    installed ones); a folder nothing reads, or a file of a type no reader knows, is an error that says
    what each input type found wrong with it."""
    from automtl.core import plugins

    problems: list[DataError] = []
    read_by: list[str] = []
    ordered = list(dict.fromkeys([str(s["type"]) for s in inputs if s.get("type")] + plugins.names("input")))
    for type_name in ordered:
        cls = installed_plugin("input", type_name, "--data")
        if cls is None:
            continue
        if cls.serving_sources:
            read_by.append(cls.serving_sources)
        try:
            found = cls.serving_source(path, inputs)
        except DataError as exc:
            problems.append(exc)
            continue
        if found is not None:
            return _source_data(path, found)
    if path.is_file():
        table = _plugin_table(path, path.suffix.lower(), read_by, bool(problems))
        if table is not None:
            return table
    if problems:
        raise problems[0]
    raise DataError(f"{path}: a folder that no installed input type reads"
                    + (f" (they read {'; '.join(read_by)})" if read_by else "")
                    + f"; give a data file ({', '.join(DATA_SUFFIXES)})")


def _source_data(path: Path, found: ServingSource) -> Data:
    lengths = {len(v) for v in found.columns.values()}
    if len(lengths) != 1:
        raise DataError(f"{path}: the input plugin that read it gave no columns or columns of different "
                        f"lengths: {sorted(lengths)}")
    return Data(dict(found.columns), lengths.pop(), tuple(found.keep))


def _plugin_table(path: Path, suffix: str, read_by: Sequence[str] = (), quiet: bool = False) -> Data | None:
    """A file type a reader plugin reads (its declared suffixes), as in training; None when no reader
    reads it and ``quiet`` (an input type said why it could not either)."""
    from automtl.data.readers import plugin_readers, read_table, suffixes

    readers = plugin_readers()
    if not any(suffix in r.suffixes for r in readers):
        if quiet:
            return None
        also = "".join(f", {what}" for what in read_by)
        raise DataError(f"{path}: unsupported data file type '{suffix}'; expected one of "
                        f"{', '.join(suffixes(readers))}{also}")
    table = read_table(path)
    return Data(dict(table.columns), len(table))


def model_inputs(manifest: dict[str, Any], data: dict[str, np.ndarray], source: str,
                 root: Path | None = None, facts: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Map the data to the SavedModel's named inputs, as the manifest describes them. An input plugin
    may map its own (files named in a column); what it says about each row lands in ``facts[input name]``."""
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
    cls = installed_plugin("input", spec.get("type"), f"model input '{spec['name']}'")
    return cls.serving_arrays(spec, data, Path(source), root) if cls is not None else None


def _array_input(spec: dict[str, Any], data: dict[str, np.ndarray], source: str) -> np.ndarray:
    key = spec["array"]
    if key not in data:
        raise DataError(f"{source}: missing array '{key}', needed by model input '{spec['name']}' "
                        f"(arrays present: {', '.join(data)})")
    values = np.asarray(data[key])
    expected = tuple(spec.get("shape", [None])[1:])
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


def output_order(manifest: dict[str, Any], outputs: dict[str, np.ndarray]) -> list[str]:
    ordered = [o for t in manifest["tasks"] for o in t.get("outputs", []) if o in outputs]
    return ordered + sorted(set(outputs) - set(ordered))


def installed_plugin(kind: str, type_name: str | None, where: str) -> Any:
    """The plugin class of a manifest entry's ``type``, or None when it has none or it is not
    installed here (predict then treats the entry as automtl does any other)."""
    if not type_name:
        return None
    from automtl.core import plugins

    try:
        return plugins.load(kind, type_name, where=where)
    except ConfigError:
        return None


def serving_outputs(manifest: dict[str, Any], outputs: dict[str, np.ndarray],
                    facts: dict[str, dict[str, np.ndarray]]) -> None:
    """Each installed task's :meth:`~automtl.api.Task.serving_outputs` (say, outputs in each row's own
    units, from what the input plugins said about it), in place."""
    inputs = {s["name"]: s for s in manifest["inputs"]}
    for task in manifest["tasks"]:
        cls = installed_plugin("task", task.get("type"), f"task '{task.get('name')}'")
        if cls is not None:
            outputs.update(cls.serving_outputs(task, outputs, inputs, facts))


def prediction_format(name: str) -> PredictionFormat:
    """The installed prediction format ``name`` (``--format``), or a clear error naming the installed ones."""
    from automtl.core import registry

    known = registry.names("prediction")
    if name not in known:
        raise AutomtlError(f"--format {name}: unknown prediction format; installed: {', '.join(known) or '(none)'}")
    try:
        fmt = registry.member("prediction", name)()
    except ConfigError as exc:
        raise AutomtlError(str(exc)) from None
    fmt.name = name
    return fmt


def check_out(out: Path, data_path: Path, format: PredictionFormat | str = "table") -> Path:
    """``--out`` can be written and overwrites nothing a user or a run needs; checked before any work."""
    out = Path(out).expanduser()
    fmt = prediction_format(format) if isinstance(format, str) else format
    if out.suffix.lower() not in fmt.suffixes:
        raise AutomtlError(f"--out {out}: unsupported output type '{out.suffix}'; --format {fmt.name} writes "
                           f"{fmt.writes} ({', '.join(fmt.suffixes)})")
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
    #: the ``--format`` that writes the outputs
    format: PredictionFormat
    #: what an input plugin says about each row (say, its original size), by input name
    facts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH
    #: the data's columns (a prediction format may read ids from them)
    columns: dict[str, np.ndarray] = field(default_factory=dict)


def plan_predict(model_dir: Path, data_path: Path, out: Path, keep: Sequence[str] = (), *,
                 root: Path | None = None, format: str = "table", batch_size: int | None = None) -> PredictPlan:
    """Read and map the data and check the output path: every user mistake is found here, before TensorFlow."""
    fmt = prediction_format(format)
    out = check_out(out, data_path, fmt)
    manifest = load_manifest(model_dir)
    problem = fmt.check(manifest)
    if problem:
        raise AutomtlError(f"{model_dir}: {problem}")
    source = read_source(data_path, manifest["inputs"])
    data, rows = source.columns, source.rows
    missing = [c for c in keep if c not in data]
    if missing:
        raise DataError(f"{data_path}: --keep column(s) not found: {', '.join(missing)}")
    if root is not None and not Path(root).is_dir():
        raise DataError(f"--root {root}: folder not found")
    facts: dict[str, dict[str, np.ndarray]] = {}
    inputs = model_inputs(manifest, data, str(data_path), root, facts)
    if batch_size is None:
        batch_size = serving_batch(manifest)
    kept = {c: data[c] for c in source.keep if c not in keep} | {c: data[c] for c in keep}  # which row is which first
    return PredictPlan(Path(model_dir), manifest, inputs, rows, out, kept, fmt, facts, batch_size, data)


def serving_batch(manifest: dict[str, Any]) -> int:
    """Rows per batch: the smallest an installed input type of the model asks for (large rows want
    fewer), else 1024."""
    asked = [getattr(cls, "serving_batch", None) for cls in
             (installed_plugin("input", s.get("type"), f"model input '{s['name']}'") for s in manifest["inputs"])]
    return min([int(b) for b in asked if b] or [DEFAULT_BATCH])


def predict(model_dir: Path, data_path: Path, out: Path, *, batch_size: int | None = None,
            keep: Sequence[str] = (), console: Any = None, root: Path | None = None,
            format: str = "table", vectors: str = "columns") -> PredictSummary:
    """Check and read (no TensorFlow), then serve and write in the ``--format`` asked for; ``vectors``: named
    vector outputs (class probabilities) as one column per entry (``columns``) or one list per row (``list``)."""
    if vectors not in VECTOR_FORMS:
        raise AutomtlError(f"--probabilities {vectors}: expected one of {', '.join(VECTOR_FORMS)}")
    import time

    from automtl.tfimport import import_tensorflow_quietly

    started = time.perf_counter()
    plan = plan_predict(model_dir, data_path, out, keep, root=root, format=format, batch_size=batch_size)
    import_tensorflow_quietly()
    outputs = run_model(plan.model_dir, plan.inputs, plan.rows, plan.batch_size, console)
    serving_outputs(plan.manifest, outputs, plan.facts)
    predictions = Predictions(plan.manifest, outputs, output_order(plan.manifest, outputs), plan.columns, plan.keep,
                              plan.rows, vectors, plan.facts)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    written = plan.format.write(plan.out, predictions)
    return PredictSummary(plan.rows, list(written), plan.out, time.perf_counter() - started)
