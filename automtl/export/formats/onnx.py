"""ONNX through tf2onnx, from the frozen portable signature; run and checked with onnxruntime.

Keras 3.15's own ``model.export(format="onnx")`` refuses a ``model.keras``
loaded back from disk ("The model provided has never called") and would
leave the tasks' post-processing out; tf2onnx converts the signature itself.

The declaration (:data:`FORMAT`) is read before TensorFlow starts (``automtl
export --format onnx`` checks the extra first), so TensorFlow's side of the
conversion is imported where it runs.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from automtl.api import ExportFormat
from automtl.errors import AutomtlError
from automtl.tfimport import quiet_python_side

OPSET = 17

FORMAT = ExportFormat(
    name="onnx", file="model.onnx", writer="automtl.export.formats.onnx:write_onnx", extra="onnx",
    modules=("tf2onnx", "onnxruntime", "onnx"), doc=f"ONNX (opset {OPSET}) through tf2onnx, checked in onnxruntime",
)


def convert(export_dir: Path) -> Any:
    """The ONNX ModelProto, with the portable signature's input and output names."""
    import tf2onnx

    from automtl.export.formats.portable import freeze_portable

    quiet_python_side()  # tf2onnx sets TensorFlow's logger as it imports: its deprecation notes stay off
    frozen = freeze_portable(export_dir)
    fn = frozen.function
    graph_def = fn.graph.as_graph_def()
    in_names = [t.name for t in fn.inputs]
    out_names = [t.name for t in fn.outputs]
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=in_names, output_names=out_names,
                                                  opset=OPSET)
    except Exception as exc:  # noqa: BLE001 - a converter failure is a property of this model, said plainly
        raise AutomtlError(f"tf2onnx could not convert this model: {type(exc).__name__}: {exc}") from None
    rename = {n: n.split(":")[0] for n in in_names}
    rename.update(dict(zip(out_names, frozen.outputs)))
    _rename(model.graph, rename)
    return model


def _rename(graph: Any, mapping: dict[str, str]) -> None:
    """Rename values everywhere they appear (sub-graphs of loops included)."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        for attr in node.attribute:
            if attr.HasField("g"):
                _rename(attr.g, mapping)
            for sub in attr.graphs:
                _rename(sub, mapping)


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess: Any, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feed.items() if k in wanted})))


def write_onnx(export_dir: Path, rows: Mapping[str, Any]) -> dict[str, Any]:
    from automtl.export.formats.portable import first_rows, latency, load_reference, parity

    FORMAT.require()
    model = convert(export_dir)
    path = Path(export_dir) / FORMAT.file
    path.write_bytes(model.SerializeToString())
    sess = session(path)
    entry: dict[str, Any] = {
        "path": FORMAT.file, "opset": OPSET, "converter": f"tf2onnx {metadata.version('tf2onnx')}",
        "runtime": f"onnxruntime {metadata.version('onnxruntime')} ({sess.get_providers()[0]})",
        "takes": "the portable inputs (see preprocessing.json; preprocess.py makes them from raw inputs)",
        "inputs": [{"name": i.name, "dtype": i.type.removeprefix("tensor(").rstrip(")"),
                    "shape": [d if isinstance(d, int) else None for d in i.shape]} for i in sess.get_inputs()],
        "outputs": [o.name for o in sess.get_outputs()],
    }
    raw = first_rows(rows)
    feed = load_reference(export_dir).preprocess(raw)
    entry["parity"] = parity(export_dir, raw, feed, run(sess, feed), "onnx")
    entry["latency"] = latency(lambda f: run(sess, f), feed, f"CPU via {sess.get_providers()[0]}")
    return entry
