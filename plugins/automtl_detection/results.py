"""``automtl predict`` for detection tasks: boxes in each image's own pixels, one list of boxes per image,
and ``--format coco`` (a COCO detection results file, as pycocotools' ``loadRes`` reads).

Light to import (numpy only): ``automtl predict`` checks the format before TensorFlow starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from automtl.api import PredictionFormat, Predictions

#: The column the COCO and box-CSV readers (and the image input, for a folder) put image paths in.
PATH_COLUMN = "image_path"
#: The padded outputs that one list per image replaces (keys of the manifest's ``detections`` entry).
PADDED = ("boxes", "scores", "labels", "class_ids")


def is_detection(entry: Mapping[str, Any]) -> bool:
    """A manifest task whose outputs are boxes per image (it says how in ``detections``)."""
    return isinstance(entry.get("detections"), dict)


def rescaled_boxes(entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray], inputs: Mapping[str, Mapping[str, Any]],
                   facts: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Boxes come back in the pixels of the image the model was served; images that predict resized to the
    training size get theirs back in their own pixels (each image's width and height from ``facts``)."""
    if not is_detection(entry):
        return {}
    d = entry["detections"]
    image = d.get("image_input") or next((n for n, s in inputs.items() if s.get("image")), None)
    sizes = facts.get(image or "")
    key = f"{entry['name']}.{d['boxes']}"
    if not sizes or key not in outputs or "width" not in sizes:
        return {}
    h, w = inputs[image]["size"]
    scale = np.stack([sizes["width"] / w, sizes["height"] / h] * 2, axis=-1).astype(np.float32)
    return {key: outputs[key] * scale[:, None, :]}


def detection_lists(entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> list[list[dict[str, Any]]]:
    """One list of ``{box, score, label, class_id}`` per image: the real detections, best first."""
    d, name = entry["detections"], entry["name"]
    boxes, scores = outputs[f"{name}.{d['boxes']}"], outputs[f"{name}.{d['scores']}"]
    labels, ids = _text(outputs[f"{name}.{d['labels']}"]), outputs[f"{name}.{d['class_ids']}"]
    count = outputs[f"{name}.{d['count']}"]
    return [[{"box": [round(float(v), 2) for v in boxes[i, j]], "score": round(float(scores[i, j]), 5),
              "label": str(labels[i, j]), "class_id": int(ids[i, j])} for j in range(int(count[i]))]
            for i in range(len(count))]


def list_outputs(entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """``<task>.detections``, one list of boxes per image, in place of the padded arrays."""
    if not is_detection(entry):
        return {}
    lists = detection_lists(entry, outputs)
    column = np.empty(len(lists), dtype=object)
    for i, dets in enumerate(lists):
        column[i] = dets
    prefix = entry["name"] + "."
    return {**{prefix + entry["detections"][k]: None for k in PADDED}, prefix + "detections": column}


def coco_results(entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray],
                 image_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """COCO detection results (``image_id, category_id, bbox [x, y, w, h], score``), as pycocotools' ``loadRes`` reads."""
    categories = entry.get("category_ids") or list(range(1, len(entry.get("classes", [])) + 1))
    results = []
    for image_id, dets in zip(image_ids, detection_lists(entry, outputs)):
        for det in dets:
            x0, y0, x1, y1 = det["box"]
            results.append({"image_id": image_id, "category_id": categories[det["class_id"]],
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": det["score"]})
    return results


def image_ids(columns: Mapping[str, np.ndarray], rows: int) -> list[Any]:
    """Each row's COCO image id: an ``image_id`` column, else numeric file names, else the row number (from 1)."""
    if "image_id" in columns:
        return [v.item() if isinstance(v, np.generic) else v for v in columns["image_id"]]
    if PATH_COLUMN in columns:
        stems = [Path(str(p)).stem for p in columns[PATH_COLUMN]]
        if all(s.isdigit() for s in stems):
            return [int(s) for s in stems]
    return list(range(1, rows + 1))


class CocoResults(PredictionFormat):
    """``--format coco``: a detection model's boxes as a COCO results JSON file."""

    suffixes = (".json",)
    writes = "a JSON file"
    doc = "a detection model's boxes as a COCO results JSON file (pycocotools' loadRes)"

    def check(self, manifest: Mapping[str, Any]) -> str | None:
        found = [t for t in manifest["tasks"] if is_detection(t)]
        if len(found) != 1:
            return f"--format {self.name} needs a model with one detection task; this one has {len(found)}"
        return None

    def write(self, out: Path, predictions: Predictions) -> list[str]:
        entry = next(t for t in predictions.manifest["tasks"] if is_detection(t))
        ids = image_ids(predictions.columns, predictions.rows)
        Path(out).write_text(json.dumps(coco_results(entry, predictions.outputs, ids), default=str))
        return [f"{entry['name']} (COCO results)"]


def _text(v: np.ndarray) -> np.ndarray:
    """Labels as Python strings (TensorFlow gives bytes)."""
    return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b), otypes=[object])(v)
