"""LiteRT (TFLite) from the frozen portable signature; run and checked with the LiteRT interpreter.

Converting ``saved_model/`` directly gives a file without its weights: the
converter keeps Keras 3's variables as resource variables (``VAR_HANDLE`` +
``READ_VARIABLE``) that nothing initialises in the converted file, so a run
reads uninitialised values (``READ_VARIABLE failed``; with the default
XNNPACK delegate, garbage class ids and ``gather index out of bounds``).
Here variables are folded into constants first, and only LiteRT's built-in
operators are allowed (no TensorFlow ops a phone runtime would lack).

The declaration (:data:`FORMAT`) is read before TensorFlow starts, so
TensorFlow loads on first use (:mod:`automtl.lazy`).
"""

from __future__ import annotations

import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from automtl.api import ExportFormat
from automtl.errors import AutomtlError
from automtl.lazy import tf
from automtl.tfimport import native_stderr_captured, quiet_python_side

FORMAT = ExportFormat(
    name="tflite", file="model.tflite", writer="automtl.export.formats.tflite:write_tflite", aliases=("litert", "lite"),
    extra="tflite", doc="LiteRT (TFLite), variables frozen, built-in ops only",
)


def convert(export_dir: Path) -> bytes:
    from automtl.export.formats.portable import freeze_portable

    frozen = freeze_portable(export_dir)
    keys = frozen.outputs

    module = tf.Module()
    module.serve = tf.function(lambda **inputs: dict(zip(keys, frozen.function(**inputs))))
    concrete = module.serve.get_concrete_function(**frozen.inputs)
    with tempfile.TemporaryDirectory() as tmp:  # a SavedModel of constants only: names kept, nothing to initialise
        tf.saved_model.save(module, tmp, signatures={"serving_default": concrete})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        quiet_python_side()  # absl logs the converter's steps at INFO
        try:
            return converter.convert()
        except Exception as exc:  # noqa: BLE001 - a converter failure is a property of this model, said plainly
            raise AutomtlError(f"LiteRT could not convert this model ({type(exc).__name__}): {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    if any("TensorListReserve" in line or "tensor list ops" in line for line in lines):
        # Keras' recurrent layers loop with tensor lists whose batch size is unknown; unrolling
        # them is no fix (Keras 3.15's unrolled masked bidirectional GRU computes other values).
        return ("a recurrent layer (the text input's 'bigru' encoder) loops over a batch of unknown size, which "
                "LiteRT's built-in operators cannot run; export it to ONNX, or search text.encoder conv or "
                "transformer for LiteRT")
    ops = sorted({line.split("'")[1] for line in lines if "neither a custom op nor a flex op" in line and "'" in line})
    return f"TensorFlow ops without a LiteRT kernel: {', '.join(ops)}" if ops else (lines[-1] if lines else "")


def interpreter(content: bytes) -> tuple[Any, str]:
    """LiteRT's interpreter (``ai-edge-litert``) when installed, else TensorFlow's own ``tf.lite``."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=content), f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except ImportError:
        with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to ai-edge-litert
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_content=content), f"tf.lite (TensorFlow {tf.__version__})"


def write_tflite(export_dir: Path, rows: Mapping[str, Any]) -> dict[str, Any]:
    from automtl.export.formats.portable import cpu_name, first_rows, latency, load_reference, parity

    content = convert(export_dir)
    path = Path(export_dir) / FORMAT.file
    path.write_bytes(content)
    signature = "serving_default"
    with native_stderr_captured():  # "Created TensorFlow Lite XNNPACK delegate for CPU", from C++
        interp, runtime = interpreter(content)
        runner = interp.get_signature_runner(signature)
    details = runner.get_input_details()
    entry: dict[str, Any] = {
        "path": FORMAT.file, "converter": f"tf.lite.TFLiteConverter (TensorFlow {tf.__version__}), "
                                              "variables frozen, built-in ops only",
        "runtime": runtime, "signature": signature,
        "takes": "the portable inputs (see preprocessing.json; preprocess.py makes them from raw inputs)",
        "inputs": [{"name": k, "dtype": np.dtype(d["dtype"]).name, "shape": [None, *map(int, d["shape"][1:])]}
                   for k, d in sorted(details.items())],
        "outputs": sorted(runner.get_output_details()),
    }
    raw = first_rows(rows)
    feed = load_reference(export_dir).preprocess(raw)

    def call(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return runner(**{k: np.ascontiguousarray(f[k]) for k in details})

    with native_stderr_captured():  # the delegate may be made at the first call
        first = call(feed)
    entry["parity"] = parity(export_dir, raw, feed, first, "tflite")
    entry["latency"] = latency(call, feed, f"{cpu_name()} via {runtime}")
    return entry
