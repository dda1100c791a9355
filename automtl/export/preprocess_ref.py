"""Reference preprocessing for automtl's ONNX and LiteRT exports: pure Python and numpy.

Copied into every export folder as ``preprocess.py``, next to
``preprocessing.json``. ONNX and LiteRT runtimes have no string kernels, so
those models take a string input as int32 ids (``<input>_ids``) and an image
at its training size; ``preprocess()`` turns the raw values the SavedModel
takes into exactly those inputs, and ``postprocess()`` adds back the string
outputs (class labels, tags) the portable models leave out::

    import numpy as np, onnxruntime as ort
    from preprocess import preprocess, postprocess
    session = ort.InferenceSession("model.onnx")
    feed = preprocess({"text": ["fly to boston"]})
    names = [o.name for o in session.get_outputs()]
    out = postprocess(dict(zip(names, session.run(None, feed))))

It imports neither TensorFlow nor automtl. Steps (from ``preprocessing.json``):
``lowercase_ascii``, ``regex_replace`` (pattern, rewrite), ``split`` (on a
regex, empty pieces dropped), ``lookup`` (vocabulary, first_id, unknown_id),
``pad`` (length, value: cut or pad token ids), ``image_size`` (check the
image is already at the model's size).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

HERE = Path(__file__).resolve().parent
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def load_spec(path: str | Path | None = None) -> dict[str, Any]:
    """``preprocessing.json`` of this export (or the one at ``path``)."""
    return json.loads(Path(path or HERE / "preprocessing.json").read_text())


def preprocess(raw: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Raw inputs (as the SavedModel takes them, one batch) -> the ONNX/LiteRT model's inputs."""
    spec = spec or load_spec()
    out: dict[str, np.ndarray] = {}
    for item in spec["inputs"]:
        name = item["input"]
        if name not in raw:
            raise KeyError(f"input '{name}' is missing (the model takes {[i['input'] for i in spec['inputs']]})")
        if not item.get("steps"):
            out[item["name"]] = np.asarray(raw[name], dtype=item["dtype"])
            continue
        values = raw[name]
        if item["dtype"] != "int32":  # a numeric input with checks only (an image's size)
            values = np.asarray(values, dtype=item["dtype"])
            for step in item["steps"]:
                values = _apply(step, values)
            out[item["name"]] = values
            continue
        rows = [_one(v, item["steps"]) for v in np.asarray(values, dtype=object).reshape(-1)]
        out[item["name"]] = np.asarray(rows, dtype=np.int32).reshape(len(rows), *item["shape"][1:])
    return out


def postprocess(outputs: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The portable model's outputs plus the string ones it leaves out (``names[id]``, ``""`` for -1)."""
    spec = spec or load_spec()
    result = dict(outputs)
    for name, rule in spec.get("labels", {}).items():
        if rule["from"] not in outputs:
            continue
        ids = np.asarray(outputs[rule["from"]])
        names = np.asarray(list(rule["names"]) + [""], dtype=object)
        result[name] = names[np.where((ids >= 0) & (ids < len(rule["names"])), ids, len(rule["names"]))]
    return result


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _one(value: Any, steps: list[dict[str, Any]]) -> Any:
    current: Any = _text(value)
    for step in steps:
        current = _apply(step, current)
    return current


def _apply(step: Mapping[str, Any], value: Any) -> Any:
    op = step["op"]
    if op == "lowercase_ascii":
        return value.translate(_ASCII_LOWER)
    if op == "regex_replace":
        return re.sub(step["pattern"], step["rewrite"], value)
    if op == "split":
        return [t for t in re.split(step["pattern"], value) if t]
    if op == "lookup":
        index = step.get("_index")
        if index is None:
            index = {w: i + step["first_id"] for i, w in enumerate(step["vocabulary"])}
            step["_index"] = index  # type: ignore[index]  (cached on the loaded spec)
        if isinstance(value, list):
            return [index.get(t, step["unknown_id"]) for t in value]
        return index.get(value, step["unknown_id"])
    if op == "pad":
        ids = list(value)[: step["length"]]
        return ids + [step["value"]] * (step["length"] - len(ids))
    if op == "image_size":
        h, w = step["size"]
        if value.ndim == 3 and step["channels"] == 1:
            value = value[..., None]
        if tuple(value.shape[1:]) != (h, w, step["channels"]):
            raise ValueError(f"images must be {h}x{w} with {step['channels']} channel(s), got shape "
                             f"{value.shape[1:]}: resize them first ({step['resize']})")
        return value
    raise ValueError(f"unknown preprocessing step '{op}'")
