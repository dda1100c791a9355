"""Export a trial: SavedModel (one signature for all tasks, one per task, a portable one), model.keras,
the reference preprocessing, ONNX / LiteRT on request, and a manifest with parity and latency figures.

The SavedModel's ``serving_default`` takes the named raw inputs and returns
each task's post-processed outputs (``<task>.<output>``); it loads and runs
with plain TensorFlow, no automtl import. ONNX and LiteRT models take the
``portable`` signature's inputs (string inputs as ids, images at their
training size: ``preprocessing.json`` and ``preprocess.py`` say how).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

import automtl
from automtl.plugin_base import InputEncoder, Task
from automtl.core.trial import TrialRecord
from automtl.errors import AutomtlError
from automtl.export.formats import names as format_names
from automtl.export.formats import write_format
from automtl.export.formats.portable import first_rows, latency, tf_device, tf_feed
from automtl.export.signatures import PORTABLE, TF_DTYPES, ServingModule, input_signature  # noqa: F401  (re-exported)
from automtl.model import layers as _layers  # noqa: F401  (registers custom layers for loading)
from automtl.rundir.outdir import atomic_folder, check_out

EXPORT_FORMAT = "automtl-export/2"
LAYOUTS = ("plain", "tf-serving")


def versions() -> dict[str, str]:
    out = {"automtl": automtl.__version__}
    for dist in ("tensorflow", "keras", "numpy", "optuna", "keras-tuner"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def export_trial(
    model_path: Path,
    encoders: Sequence[InputEncoder],
    tasks: Sequence[Task],
    record: TrialRecord,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
    *,
    formats: Sequence[str] = ("saved_model",),
    rows: Mapping[str, Any] | None = None,
    layout: str = "plain",
    model_name: str = "model",
    force: bool = False,
) -> Path:
    """Write the export atomically (a crash or a failed parity check leaves ``out_dir`` as it was).

    ``rows``: raw validation inputs for the parity checks and latency figures.
    ``layout="tf-serving"``: ``out_dir`` is a TF Serving model base; the export goes to
    ``out_dir/<model_name>/<next version>/`` with the SavedModel's files at its top.
    Returns the folder written.
    """
    if layout not in LAYOUTS:
        raise AutomtlError(f"--layout {layout}: expected one of {', '.join(LAYOUTS)}")
    known = format_names()
    unknown = [f for f in formats if f not in known]
    if unknown:
        raise AutomtlError(f"unknown export format(s) {', '.join(unknown)}; expected any of {', '.join(known)}")
    if rows is None and any(f != "saved_model" for f in formats):
        raise AutomtlError("ONNX and LiteRT exports are checked against the SavedModel on validation rows: pass rows")
    out_dir = Path(out_dir)
    check_out(out_dir, force=force, serving=layout == "tf-serving")
    target = serving_version(out_dir, model_name) if layout == "tf-serving" else out_dir
    for plugin in (*encoders, *tasks):
        plugin.register_keras_objects()  # custom layers of plugins, e.g. after a resumed search
    model = keras.saving.load_model(model_path)
    module = ServingModule(model, tasks, encoders)
    signatures = module.signatures()
    rows = first_rows(rows) if rows is not None and len(rows) else None
    with atomic_folder(target) as tmp:
        shutil.copy2(model_path, tmp / "model.keras")
        written = write_serving_files(tmp, module, signatures, tasks, rows, formats)
        manifest = {
            "format": EXPORT_FORMAT,
            **serving_manifest(module, signatures, encoders, tasks, written, layout),
            "parameters": int(model.count_params()),
            "trial": {"number": record.number, "score": record.score, "params": record.params,
                      "metrics": record.metrics, "device": record.device, "best_epoch": record.best_epoch},
            "versions": versions(),
            **(extra or {}),
        }
        write_manifest(tmp, manifest, layout)
    return target


def write_serving_files(folder: Path, module: Any, signatures: Mapping[str, Any], tasks: Sequence[Task],
                        rows: Mapping[str, Any] | None, formats: Sequence[str]) -> dict[str, Any]:
    """What every export folder serves from, its model files aside: ``saved_model/``, ``preprocessing.json``,
    ``preprocess.py`` and each other format (checked against the SavedModel on ``rows``). Returns the
    manifest's ``formats`` entry."""
    tf.saved_model.save(module, str(folder / "saved_model"), signatures=signatures)
    (folder / "preprocessing.json").write_text(json.dumps(preprocessing_doc(module, tasks), indent=2))
    shutil.copyfile(Path(__file__).with_name("preprocess_ref.py"), folder / "preprocess.py")
    written = {"saved_model": saved_model_entry(folder, signatures, rows)}
    for fmt in formats:
        if fmt != "saved_model":
            written[fmt] = write_format(fmt, folder, rows)
    return written


def serving_manifest(module: Any, signatures: Mapping[str, Any], encoders: Sequence[InputEncoder],
                     tasks: Sequence[Task], written: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """The manifest entries every export has (a trial's or an ensemble's): when it was made, what its
    signatures take and return, its inputs and tasks, its formats and portable files."""
    outputs = sorted(signatures["serving_default"].structured_outputs)
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "signature": "serving_default",
        "signatures": {name: {"inputs": sorted(fn.structured_input_signature[1]),
                              "outputs": sorted(fn.structured_outputs)} for name, fn in signatures.items()},
        "inputs": [s.describe() | {"input": enc.name, "type": type_of(enc)} for enc in encoders for s in enc.specs()],
        "tasks": [
            {"name": t.name, "type": type_of(t), "primary_metric": t.primary_metric,
             "outputs": [o for o in outputs if o.startswith(f"{t.name}.")],
             **({"signature": f"serve_{t.name}"} if f"serve_{t.name}" in signatures else {}), **t.describe()}
            for t in tasks
        ],
        "formats": dict(written),
        "portable": {"preprocessing": "preprocessing.json", "reference": "preprocess.py"}
        if module.portable_parts.model is not None else {"unavailable": module.portable_parts.reason},
        "layout": layout,
    }


def write_manifest(folder: Path, manifest: dict[str, Any], layout: str) -> None:
    """``automtl.json``, last (the TF Serving layout first moves the SavedModel's files to the top)."""
    if layout == "tf-serving":
        flatten_for_serving(folder, manifest)
    (folder / "automtl.json").write_text(json.dumps(manifest, indent=2, default=str))


def saved_model_entry(folder: Path, signatures: Mapping[str, Any], rows: Mapping[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": "saved_model", "takes": "the raw inputs (serving_default, serve_<task>); "
                             "the portable inputs (portable)", "signatures": sorted(signatures)}
    if rows is not None:
        fn = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
        entry["latency"] = latency(lambda f: fn(**tf_feed(f)), rows, tf_device())
    return entry


def preprocessing_doc(module: Any, tasks: Sequence[Task]) -> dict[str, Any]:
    """``preprocessing.json``: how raw inputs become the portable inputs, and the string outputs left out
    (``module``: a :class:`ServingModule` or an ensemble's, anything with ``portable_parts``)."""
    parts = module.portable_parts
    items = [{"input": n, "name": n, "dtype": s.dtype.name, "shape": [None, *s.shape[1:]], "steps": []}
             for n, s in parts.passthrough.items()]
    items += [p.describe() for p in parts.inputs]
    labels = {f"{t.name}.{out}": {"from": f"{t.name}.{src}", "names": list(names)}
              for t in tasks for out, (src, names) in t.label_outputs().items()}
    return {"format": "automtl-preprocessing/1", "signature": PORTABLE, "inputs": items, "labels": labels,
            **({"unavailable": parts.reason} if parts.model is None else {})}


def serving_version(base: Path, name: str) -> Path:
    """TF Serving's ``<base>/<model name>/<version>``: the next integer version."""
    folder = base / name
    if folder.exists() and not folder.is_dir():
        raise AutomtlError(f"{folder} is a file; TF Serving needs a folder of numbered versions there")
    versions_ = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return folder / str(max(versions_, default=0) + 1)


def flatten_for_serving(folder: Path, manifest: dict[str, Any]) -> None:
    """TF Serving loads ``saved_model.pb`` and ``variables/`` from the version folder itself."""
    saved = folder / "saved_model"
    for child in saved.iterdir():
        child.rename(folder / child.name)
    saved.rmdir()
    manifest["formats"]["saved_model"]["path"] = "."


def type_of(plugin: Any) -> str:
    return getattr(plugin, "type_name", None) or type(plugin).__name__

