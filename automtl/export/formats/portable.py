"""What every converted format shares: the frozen portable signature, parity against the SavedModel, latency."""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from automtl.data.streamed import is_streamed
from automtl.errors import AutomtlError
from automtl.export.signatures import PORTABLE

#: Parity tolerance for float32 outputs: |converted - SavedModel| <= RTOL * max(|SavedModel|, 1).
RTOL = 1e-4
#: Rows of the validation split the parity check runs (all of them, up to this many).
MAX_ROWS = 512
LATENCY_BATCHES = (1, 256)


@dataclass
class Frozen:
    """The portable signature with its variables folded into constants (no resource ops left)."""

    function: Any
    inputs: dict[str, tf.TensorSpec]
    outputs: list[str]  # in the order of ``function.outputs``


def freeze_portable(export_dir: Path) -> Frozen:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(Path(export_dir) / "saved_model"))
    if PORTABLE not in loaded.signatures:
        raise AutomtlError(f"{export_dir}: the SavedModel has no '{PORTABLE}' signature; see 'portable' in "
                           "automtl.json for why this model cannot be exported to ONNX or LiteRT")
    sig = loaded.signatures[PORTABLE]
    # LiteRT keeps variables as resource ops it cannot initialise from a SavedModel's checkpoint
    # (a converted file without its weights: READ_VARIABLE fails); constants convert everywhere.
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # TF1-era deprecation notes from inside the freezing helper
    try:
        frozen = convert_variables_to_constants_v2(sig, lower_control_flow=False, aggressive_inlining=True)
    finally:
        tf.get_logger().setLevel(level)
    return Frozen(frozen, dict(sig.structured_input_signature[1]), sorted(sig.structured_outputs))


def load_reference(export_dir: Path) -> Any:
    """The export's own ``preprocess.py``, imported from its file: parity tests the file users get."""
    path = Path(export_dir) / "preprocess.py"
    spec = importlib.util.spec_from_file_location(f"automtl_export_preprocess_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def first_rows(rows: Mapping[str, Any], n: int = MAX_ROWS) -> dict[str, np.ndarray]:
    """The first ``n`` rows as numpy arrays (a streamed input, e.g. images read from disk, decodes only those)."""
    return {k: v.take(np.arange(min(n, len(v)))) if is_streamed(v) else np.asarray(v)[:n] for k, v in rows.items()}


def tile(rows: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """``n`` rows, repeating the given ones (latency batches)."""
    out = {}
    for k, v in rows.items():
        idx = np.arange(n) % len(v)
        out[k] = np.asarray(v)[idx]
    return out


def tf_feed(rows: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in rows.items()}


def saved_model_outputs(export_dir: Path, rows: Mapping[str, np.ndarray], signature: str = "serving_default") -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(str(Path(export_dir) / "saved_model")).signatures[signature]
    return {k: v.numpy() for k, v in fn(**tf_feed(rows)).items()}


def parity(export_dir: Path, raw: Mapping[str, np.ndarray], portable_in: Mapping[str, np.ndarray],
           converted: Mapping[str, np.ndarray], fmt: str) -> dict[str, Any]:
    """Converted outputs against the SavedModel's: ``serving_default`` on the raw rows for outputs it
    has (so the reference preprocessing is checked too), else the ``portable`` signature."""
    served = saved_model_outputs(export_dir, raw)
    direct = None
    report: dict[str, Any] = {}
    bad = []
    for key in sorted(converted):
        if key in served:
            ref, against = served[key], "serving_default"
        else:
            direct = direct if direct is not None else saved_model_outputs(export_dir, portable_in, PORTABLE)
            ref, against = direct[key], PORTABLE
        got = np.asarray(converted[key])
        if got.shape != ref.shape:
            report[key] = {"ok": False, "against": against, "shape": list(got.shape), "expected_shape": list(ref.shape)}
            bad.append(f"{key} (shape {got.shape}, expected {ref.shape})")
            continue
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        if np.issubdtype(ref.dtype, np.floating):
            scale = np.maximum(np.abs(ref.astype(np.float64)), 1.0)
            ok = bool(np.all(diff <= RTOL * scale)) if diff.size else True
            entry = {"max_abs_diff": float(diff.max()) if diff.size else 0.0,
                     "max_rel_diff": float((diff / scale).max()) if diff.size else 0.0}
        else:
            mismatched = int(np.count_nonzero(diff))
            ok = mismatched == 0
            entry = {"max_abs_diff": float(diff.max()) if diff.size else 0.0, "mismatched": mismatched}
        report[key] = {"ok": ok, "against": against, **entry}
        if not ok:
            bad.append(f"{key} (max abs diff {entry['max_abs_diff']:.3g})")
    if bad:
        raise AutomtlError(f"{fmt} export differs from the SavedModel beyond {RTOL:g} relative on "
                           f"{len(next(iter(raw.values())))} validation rows: {', '.join(bad)}")
    rows = len(next(iter(raw.values()))) if raw else 0
    return {"rows": rows, "tolerance": f"|{fmt} - SavedModel| <= {RTOL:g} x max(|SavedModel|, 1) per value; "
                                      "integer outputs exactly", "outputs": report}


def latency(call: Callable[[Mapping[str, np.ndarray]], Any], rows: Mapping[str, np.ndarray], device: str,
            budget_s: float = 3.0) -> dict[str, Any]:
    """Median wall time of repeated calls at batch 1 and 256 (after one warm-up call each)."""
    out: dict[str, Any] = {"device": device}
    for batch in LATENCY_BATCHES:
        feed = tile(rows, batch)
        call(feed)  # warm-up: first-call set-up is not serving latency
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 30 and (len(times) < 5 or time.perf_counter() - start < budget_s / len(LATENCY_BATCHES)):
            t0 = time.perf_counter()
            call(feed)
            times.append(time.perf_counter() - t0)
        out[f"batch_{batch}_ms"] = round(1000 * statistics.median(times), 3)
        out[f"batch_{batch}_calls"] = len(times)
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU ({line.split(':', 1)[1].strip()}, {os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def tf_device() -> str:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return cpu_name()
