"""mAP with pycocotools (the reference COCO implementation), over normalised boxes.

IoU does not change when both axes are scaled, so boxes are scaled to a
virtual 1000 x 1000 image; only the "all areas" range is evaluated.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

SCALE = 1000.0


def coco_map(gt: list[np.ndarray], det_boxes: np.ndarray, det_scores: np.ndarray, det_classes: np.ndarray,
             num_det: np.ndarray, num_classes: int, max_detections: int = 100) -> dict[str, float]:
    """``map`` (mAP@[.5:.95]) and ``map50`` (mAP@0.5) over the images.

    ``gt[i]`` is image i's ``[k, 5]`` array of normalised xyxy boxes and class ids;
    detections are the padded outputs of the NMS, ``num_det[i]`` of them valid.
    NaN when the images hold no object at all.
    """
    precision = coco_precision(gt, det_boxes, det_scores, det_classes, num_det, num_classes, max_detections)
    if precision is None:
        return {"map": float("nan"), "map50": float("nan")}
    if not precision.size:
        return {"map": 0.0, "map50": 0.0}
    return {"map": _mean(precision), "map50": _mean(precision[0])}


#: The recall points of COCO's precision-recall curves (pycocotools' ``recThrs``).
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def coco_precision(gt: list[np.ndarray], det_boxes: np.ndarray, det_scores: np.ndarray, det_classes: np.ndarray,
                   num_det: np.ndarray, num_classes: int, max_detections: int = 100) -> np.ndarray | None:
    """COCO's interpolated precision ``[IoU thresholds .5:.95, recall points, classes]`` (-1: a class
    without ground truth); None when the images hold no object, empty when nothing was detected."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i} for i in range(len(gt))]
    anns = []
    for i, boxes in enumerate(gt):
        for x0, y0, x1, y1, c in boxes:
            w, h = (x1 - x0) * SCALE, (y1 - y0) * SCALE
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1,
                         "bbox": [x0 * SCALE, y0 * SCALE, w, h], "area": w * h, "iscrowd": 0})
    if not anns:
        return None
    rows = []
    for i in range(len(gt)):
        n = int(num_det[i])
        if n == 0:
            continue
        b = det_boxes[i, :n] * SCALE
        rows.append(np.column_stack([np.full(n, i), b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1],
                                     det_scores[i, :n], det_classes[i, :n] + 1]))
    if not rows:
        return np.empty((0, 0, 0))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": anns,
                         "categories": [{"id": c + 1} for c in range(num_classes)]}
        truth.createIndex()
        found = truth.loadRes(np.concatenate(rows).astype(np.float64))
        ev = COCOeval(truth, found, iouType="bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e12]], ["all"]
        ev.params.maxDets = [max_detections]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, 0]  # [iou thresholds, recall points, classes]


def _mean(values: np.ndarray) -> float:
    present = values[values > -1]  # -1: a class with no ground truth
    return float(present.mean()) if present.size else float("nan")
