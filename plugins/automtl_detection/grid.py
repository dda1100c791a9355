"""The anchor-free grid head's maths, in TensorFlow: decode, target assignment, loss, NMS.

The head's raw output is ``[b, gh, gw, 5 + classes]`` per cell of the feature map:
objectness logit, box logits ``(tl, tt, tr, tb)`` and class logits. As in FCOS,
a cell predicts the distances from its centre to the box's four sides,
``exp(t) / g`` (one cell when ``t = 0``). The cells whose centres lie inside an
object's box and within ``CENTRE_RADIUS`` cells of its centre, and always the
cell holding its centre, are that object's positives. Boxes are normalised
``xmin, ymin, xmax, ymax`` throughout (see ``automtl.api.Task.box_targets``).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

#: Objectness logit bias at start: every cell begins as "1% likely an object" (RetinaNet's prior).
PRIOR = 0.01
PRIOR_BIAS = -math.log((1 - PRIOR) / PRIOR)
#: Distances are ``exp(LOG_RANGE * tanh(t / LOG_RANGE))`` cells: between 1/55 and 55 cells,
#: bounded smoothly so that the gradient never dies at a hard clip.
LOG_RANGE = 4.0
#: How far (in cells) from an object's centre its positive cells may lie.
CENTRE_RADIUS = 1.5


def split(raw: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(objectness [b, g], box logits [b, gh, gw, 4], class logits [b, g, classes])``, g = gh * gw."""
    raw = tf.cast(raw, tf.float32)
    shape = tf.shape(raw)
    cells = shape[1] * shape[2]
    return tf.reshape(raw[..., 0], [shape[0], cells]), raw[..., 1:5], tf.reshape(raw[..., 5:], [shape[0], cells, -1])


def cell_centres(gh: tf.Tensor, gw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Normalised x and y of each cell's centre, ``[gh * gw]`` each (row-major)."""
    cols, rows = tf.meshgrid(tf.range(gw), tf.range(gh))
    cx = (tf.cast(cols, tf.float32) + 0.5) / tf.cast(gw, tf.float32)
    cy = (tf.cast(rows, tf.float32) + 0.5) / tf.cast(gh, tf.float32)
    return tf.reshape(cx, [-1]), tf.reshape(cy, [-1])


def decode_boxes(box_logits: tf.Tensor) -> tf.Tensor:
    """Box logits ``[b, gh, gw, 4]`` -> normalised xyxy boxes ``[b, gh * gw, 4]``."""
    shape = tf.shape(box_logits)
    gh, gw = shape[1], shape[2]
    cx, cy = cell_centres(gh, gw)
    fw, fh = tf.cast(gw, tf.float32), tf.cast(gh, tf.float32)
    t = tf.reshape(box_logits, [shape[0], gh * gw, 4])
    d = tf.exp(LOG_RANGE * tf.tanh(t / LOG_RANGE))
    left, top, right, bottom = tf.unstack(d, axis=-1)
    return tf.stack([cx - left / fw, cy - top / fh, cx + right / fw, cy + bottom / fh], axis=-1)


def assign(y: Any, gh: tf.Tensor, gw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per cell: is it a positive (``[b, g]`` 0/1), and its object's box and class.

    A cell inside several objects' positive regions takes the smallest object.
    """
    y = tf.cast(y, tf.float32)
    boxes, cls = y[..., :4], y[..., 4]
    valid = tf.cast(cls >= 0, tf.float32)
    x0, y0, x1, y1 = (t[..., None] for t in tf.unstack(boxes, axis=-1))  # [b, k, 1]
    fw, fh = tf.cast(gw, tf.float32), tf.cast(gh, tf.float32)
    cx, cy = cell_centres(gh, gw)  # [g]
    ox, oy = (x0 + x1) / 2, (y0 + y1) / 2
    inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
    near = (tf.abs(cx - ox) * fw <= CENTRE_RADIUS) & (tf.abs(cy - oy) * fh <= CENTRE_RADIUS)
    col = tf.clip_by_value(tf.cast(tf.floor(ox[..., 0] * fw), tf.int32), 0, gw - 1)
    row = tf.clip_by_value(tf.cast(tf.floor(oy[..., 0] * fh), tf.int32), 0, gh - 1)
    centre = tf.one_hot(row * gw + col, gh * gw) > 0
    candidate = tf.cast((inside & near) | centre, tf.float32) * valid[..., None]  # [b, k, g]
    preference = candidate * (2.0 - (x1 - x0) * (y1 - y0))
    positive = tf.reduce_max(candidate, axis=1)
    index = tf.argmax(preference, axis=1, output_type=tf.int32)
    return positive, tf.gather(boxes, index, batch_dims=1), tf.gather(cls, index, batch_dims=1)


def loss(y_true: Any, raw: Any, objectness: str = "focal", box_weight: float = 5.0) -> tf.Tensor:
    """Per-image loss ``[b]``: objectness over all cells (focal or BCE), class cross-entropy and
    ``1 - CIoU`` (``keras.utils.bounding_boxes.compute_ciou``) on object cells, over the object count."""
    import keras

    obj, box_logits, cls_logits = split(raw)
    shape = tf.shape(box_logits)
    positive, target_boxes, target_cls = assign(y_true, shape[1], shape[2])
    if objectness == "focal":
        obj_loss = keras.losses.binary_focal_crossentropy(
            positive[..., None], obj[..., None], apply_class_balancing=True, alpha=0.25, gamma=2.0, from_logits=True)
    else:
        obj_loss = keras.losses.binary_crossentropy(positive[..., None], obj[..., None], from_logits=True)
    cls_loss = keras.losses.sparse_categorical_crossentropy(
        tf.cast(tf.maximum(target_cls, 0.0), tf.int32), cls_logits, from_logits=True)
    pred_boxes = decode_boxes(box_logits)
    # Cells without an object get a harmless unit box as target; their box loss is masked out.
    target_boxes = tf.where(positive[..., None] > 0, target_boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))
    ciou = keras.utils.bounding_boxes.compute_ciou(pred_boxes, target_boxes, bounding_box_format="xyxy")
    box_loss = 1.0 - tf.cast(ciou, tf.float32)
    total = tf.reduce_sum(obj_loss, axis=1) + tf.reduce_sum(positive * (cls_loss + box_weight * box_loss), axis=1)
    return total / tf.maximum(tf.reduce_sum(positive, axis=1), 1.0)


def detect(raw: Any, max_detections: int, score_threshold: float, iou_threshold: float) -> dict[str, tf.Tensor]:
    """Decode, score (objectness x class probability), per-class NMS with
    ``tf.image.combined_non_max_suppression``. Boxes normalised xyxy; padded entries
    (past ``num_detections``) have class -1 and score 0."""
    obj, box_logits, cls_logits = split(raw)
    boxes = decode_boxes(box_logits)
    scores = tf.sigmoid(obj)[..., None] * tf.nn.softmax(cls_logits, axis=-1)
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    yxyx = tf.stack([y0, x0, y1, x1], axis=-1)[:, :, None, :]
    cells = tf.shape(boxes)[1]
    per_class = tf.minimum(max_detections, cells)
    nms = tf.image.combined_non_max_suppression(
        yxyx, scores, max_output_size_per_class=per_class, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, clip_boxes=True, pad_per_class=False,
    )
    n = nms.valid_detections
    live = tf.range(max_detections)[None, :] < n[:, None]
    ny0, nx0, ny1, nx1 = tf.unstack(nms.nmsed_boxes, axis=-1)
    return {
        "boxes": tf.stack([nx0, ny0, nx1, ny1], axis=-1),
        "scores": tf.where(live, nms.nmsed_scores, 0.0),
        "class_id": tf.where(live, tf.cast(nms.nmsed_classes, tf.int32), -1),
        "num_detections": tf.cast(n, tf.int32),
    }


# -- ensembles: detections as one tensor, and weighted box fusion over members' boxes -----------
def pack(det: dict[str, tf.Tensor]) -> tf.Tensor:
    """Detections as one ``[b, max_detections, 6]`` tensor: xmin, ymin, xmax, ymax, score, class id
    (-1: padding, after the real ones). An ensemble's combined "raw" output for detection."""
    return tf.concat([det["boxes"], det["scores"][..., None], tf.cast(det["class_id"], tf.float32)[..., None]], -1)


def unpack(dets: Any) -> dict[str, tf.Tensor]:
    """The inverse of :func:`pack`: the dictionary :func:`detect` returns."""
    dets = tf.cast(dets, tf.float32)
    cls = tf.cast(tf.round(dets[..., 5]), tf.int32)
    live = cls >= 0
    return {"boxes": dets[..., :4], "scores": tf.where(live, dets[..., 4], 0.0), "class_id": tf.where(live, cls, -1),
            "num_detections": tf.reduce_sum(tf.cast(live, tf.int32), axis=1)}


def pairwise_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of every box of ``a`` ``[B, D, 4]`` with every box of ``b`` ``[B, N, 4]`` (xyxy): ``[B, D, N]``."""
    ax0, ay0, ax1, ay1 = (a[..., i][:, :, None] for i in range(4))
    bx0, by0, bx1, by1 = (b[..., i][:, None, :] for i in range(4))
    iw = tf.maximum(tf.minimum(ax1, bx1) - tf.maximum(ax0, bx0), 0.0)
    ih = tf.maximum(tf.minimum(ay1, by1) - tf.maximum(ay0, by0), 0.0)
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / tf.maximum(union, 1e-12)


def fuse(raws: list[Any], weights: list[float], num_classes: int, max_detections: int, score_threshold: float,
         iou_threshold: float) -> tf.Tensor:
    """Weighted box fusion (Solovyev et al., 2019) of several models' detections, in the graph.

    Each member's detections (after its own NMS) join one pool. Clusters are seeded
    by class-wise NMS over the pool; every pooled box joins the same-class seed it
    overlaps most (IoU >= ``iou_threshold``). A cluster's box is the mean of its
    boxes weighted by score x member weight; its score is the member-weighted mean
    of each member's best score in it (a member that missed the object adds 0), so
    boxes the members agree on rank first. Returns :func:`pack`'s layout.
    """
    total = float(sum(weights))
    dets = [unpack(r) if len(r.shape) == 3 else detect(r, max_detections, score_threshold, iou_threshold) for r in raws]
    sizes = [int(d["scores"].shape[1] or max_detections) for d in dets]
    boxes = tf.concat([d["boxes"] for d in dets], axis=1)  # [b, N, 4]
    scores = tf.concat([d["scores"] for d in dets], axis=1)  # [b, N]
    cls = tf.concat([d["class_id"] for d in dets], axis=1)  # [b, N]
    member_w = tf.constant([float(w) / total for w, n in zip(weights, sizes) for _ in range(n)], tf.float32)  # [N]
    valid = (cls >= 0) & (scores > 0)
    pooled = tf.one_hot(tf.maximum(cls, 0), num_classes) * tf.where(valid, scores, 0.0)[..., None]  # [b, N, C]
    x0, y0, x1, y1 = tf.unstack(boxes, axis=-1)
    seeds = tf.image.combined_non_max_suppression(
        tf.stack([y0, x0, y1, x1], axis=-1)[:, :, None, :], pooled, max_output_size_per_class=max_detections,
        max_total_size=max_detections, iou_threshold=iou_threshold, score_threshold=1e-6, clip_boxes=False,
        pad_per_class=False)
    sy0, sx0, sy1, sx1 = tf.unstack(seeds.nmsed_boxes, axis=-1)
    seed_boxes = tf.stack([sx0, sy0, sx1, sy1], axis=-1)  # [b, D, 4]
    seed_cls = tf.cast(seeds.nmsed_classes, tf.int32)
    seed_live = tf.range(max_detections)[None, :] < seeds.valid_detections[:, None]  # [b, D]
    iou = pairwise_iou(seed_boxes, boxes)  # [b, D, N]
    eligible = (seed_live[:, :, None] & valid[:, None, :] & (seed_cls[:, :, None] == cls[:, None, :])
                & (iou >= iou_threshold - 1e-6))
    masked = tf.where(eligible, iou, -1.0)
    joins = eligible & (masked >= tf.reduce_max(masked, axis=1, keepdims=True))  # each box joins its best seed
    in_cluster = tf.cast(joins, tf.float32) * scores[:, None, :]  # [b, D, N]
    weighted = in_cluster * member_w[None, None, :]
    fused_boxes = tf.einsum("bdn,bnk->bdk", weighted, boxes) / tf.maximum(tf.reduce_sum(weighted, -1), 1e-12)[..., None]
    fused = tf.zeros_like(in_cluster[..., 0])
    start = 0
    for w, n in zip(weights, sizes):
        fused += float(w) / total * tf.reduce_max(in_cluster[:, :, start:start + n], axis=-1)
        start += n
    fused = tf.where(seed_live, fused, 0.0)
    top = tf.math.top_k(fused, k=max_detections)
    order = top.indices
    out_scores = top.values
    out_boxes = tf.gather(fused_boxes, order, batch_dims=1)
    out_cls = tf.gather(seed_cls, order, batch_dims=1)
    live = out_scores >= max(score_threshold, 1e-6)
    return pack({"boxes": tf.where(live[..., None], out_boxes, 0.0), "scores": tf.where(live, out_scores, 0.0),
                 "class_id": tf.where(live, out_cls, -1)})
