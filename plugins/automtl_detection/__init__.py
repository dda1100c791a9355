"""The built-in ``detection`` task: several objects per image, several classes.

Annotations come from the ``objects`` column that the COCO JSON and box-CSV
readers make (per image, a list of ``(xmin, ymin, xmax, ymax, label)`` pixel
boxes), with the ``width`` and ``height`` columns. The head is single-stage and
anchor-free: per cell of the image input's spatial feature map, objectness,
class and box (see :mod:`automtl_detection.grid`). Metrics: COCO mAP@0.5
(primary) and mAP@[.5:.95], computed with pycocotools. The exported model
decodes, thresholds and runs non-maximum suppression in the graph and returns
boxes in the input image's pixels.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import numpy as np
import pydantic

from automtl.api import ConfigError, DataError, HeadParams, Options, Table, Targets, Task, as_float

from .formats import check_box


class DetectionOptions(Options):
    objects: str = "objects"
    width: str = "width"
    height: str = "height"
    classes: list[str] | None = None
    input: str | None = None
    objectness_loss: Literal["focal", "bce"] = "focal"
    box_loss_weight: pydantic.PositiveFloat = 5.0
    score_threshold: float = pydantic.Field(0.05, ge=0.0, lt=1.0)
    iou_threshold: float = pydantic.Field(0.5, gt=0.0, le=1.0)
    max_detections: pydantic.PositiveInt = 100


class DetectionTask(Task):
    Options = DetectionOptions
    view = "spatial"
    primary_metric = "map50"
    direction = "maximize"
    box_targets = True

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.boxes_input = self.options.input
        if self.options.classes is not None and len(set(map(str, self.options.classes))) != len(self.options.classes):
            raise ConfigError(f"task '{name}': option 'classes' lists a class twice")

    def _owner(self) -> str:
        return f"task '{self.name}'"

    # -- labels -----------------------------------------------------------------------------
    def prepare(self, train: Table) -> None:
        self.category_ids: list[Any] | None = None
        if self.options.classes is not None:
            self.classes = [str(c).strip() for c in self.options.classes]
        elif train.meta.get("categories"):
            self.classes = [str(c) for c in train.meta["categories"]]
            self.category_ids = train.meta.get("category_ids")  # COCO ids, for results files that score
        else:
            cells = train.column(self.options.objects, needed_by=self._owner())
            self.classes = sorted({str(o[4]).strip() for cell in cells if _present(cell) for o in cell})
        if not self.classes:
            raise DataError(f"{train.source}: {self._owner()} found no object classes; give 'classes' or annotate some objects")
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.max_boxes = 1
        self.max_boxes = int(self.targets(train).y.shape[1])

    def targets(self, data: Table) -> Targets:
        cells = data.column(self.options.objects, needed_by=self._owner() + _HINT)
        widths = as_float(data, self.options.width, needed_by=self._owner())
        heights = as_float(data, self.options.height, needed_by=self._owner())
        n = len(data)
        mask = np.array([_present(c) for c in cells], dtype=bool)
        k = max([self.max_boxes] + [len(c) for c, m in zip(cells, mask) if m])
        y = np.zeros((n, k, 5), np.float32)
        y[..., 4] = -1.0
        for i in np.flatnonzero(mask):
            w, h = widths[i], heights[i]
            where = f"{data.source}: {data.row_label(i)}"
            if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
                raise DataError(f"{where}: image width and height must be positive numbers (columns "
                                f"'{self.options.width}', '{self.options.height}'), got {w!r} x {h!r}")
            for j, obj in enumerate(cells[i]):
                y[i, j] = self._box(obj, w, h, where)
        return Targets(y=y, mask=mask)

    def _box(self, obj: Any, w: float, h: float, where: str) -> list[float]:
        try:
            x0, y0, x1, y1, label = obj
        except (TypeError, ValueError):
            raise DataError(f"{where}: {self._owner()} expects each object as (xmin, ymin, xmax, ymax, label), "
                            f"got {obj!r}") from None
        try:
            x0, y0, x1, y1 = check_box((x0, y0, x1, y1), w, h, where)
        except (TypeError, ValueError):
            raise DataError(f"{where}: {self._owner()} expects numeric box coordinates, got {obj!r}") from None
        label = str(label).strip()
        if label not in self.index:
            raise DataError(f"{where}: category {label!r} is missing from the categories list of {self._owner()} "
                            f"({', '.join(self.classes[:20])})")
        return [x0 / w, y0 / h, x1 / w, y1 / h, float(self.index[label])]

    def build_head(self, features: Any, params: HeadParams) -> Any:
        import keras

        from .grid import PRIOR_BIAS

        reg = keras.regularizers.L2(params.l2) if params.l2 > 0 else None

        def tower(name: str) -> Any:
            x = features
            for i in range(params.depth):
                x = keras.layers.Conv2D(params.units, 3, padding="same", activation="relu", kernel_regularizer=reg,
                                        name=f"{name}_conv{i}")(x)
            return x

        # Decoupled towers (as in YOLOX): one for where objects are, one for what they are.
        where, what = tower("box"), tower("class")
        # Small initial outputs (as in RetinaNet/FCOS): every cell starts as "1% likely an
        # object" predicting a box one cell out from its centre on each side.
        small = keras.initializers.RandomNormal(stddev=0.01)
        obj = keras.layers.Conv2D(1, 1, kernel_initializer=small, bias_initializer=keras.initializers.Constant(PRIOR_BIAS),
                                  name="objectness")(where)
        box = keras.layers.Conv2D(4, 1, kernel_initializer=small, kernel_regularizer=reg, name="box")(where)
        cls = keras.layers.Conv2D(len(self.classes), 1, kernel_initializer=small, kernel_regularizer=reg,
                                  name="classes")(what)
        return keras.layers.Concatenate(name="cells")([obj, box, cls])

    def loss(self, y_true: Any, y_pred: Any) -> Any:
        from .grid import loss

        return loss(y_true, y_pred, self.options.objectness_loss, self.options.box_loss_weight)

    def _detect(self, raw: Any) -> dict[str, Any]:
        """Detections from a raw grid, or from an ensemble's fused detections (see :meth:`combine`)."""
        from .grid import detect, unpack

        if len(raw.shape) == 3:
            return unpack(raw)
        o = self.options
        return detect(raw, o.max_detections, o.score_threshold, o.iou_threshold)

    # -- ensembles and distillation ------------------------------------------------------
    def combine(self, raw_outputs: Any, weights: Any) -> Any:
        """Weighted box fusion over the members' boxes (members may differ in grid size).

        The result is not a grid but the fused detections ``[b, max_detections, 6]``
        (boxes, score, class id), which :meth:`evaluate` and :meth:`postprocess` accept too.
        """
        from .grid import fuse

        o = self.options
        return fuse(list(raw_outputs), list(weights), len(self.classes), o.max_detections, o.score_threshold,
                    o.iou_threshold)

    def distill_targets(self, teacher_raw: np.ndarray, temperature: float) -> Targets:
        """The teacher's confident boxes (score >= ``PSEUDO_BOX_SCORE``) as extra box targets."""
        n = len(teacher_raw)
        parts = [{k: v.numpy() for k, v in self._detect(teacher_raw[s : s + 256].astype(np.float32)).items()}
                 for s in range(0, n, 256)]
        det = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        b = det["boxes"] = np.clip(det["boxes"], 0.0, 1.0)
        keep = ((det["scores"] >= PSEUDO_BOX_SCORE) & (det["class_id"] >= 0)
                & (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1]))
        k = max(1, int(keep.sum(axis=1).max(initial=0)))
        y = np.zeros((n, k, 5), np.float32)
        y[..., 4] = -1.0
        for i in range(n):
            rows = np.flatnonzero(keep[i])
            y[i, : len(rows), :4] = det["boxes"][i, rows]
            y[i, : len(rows), 4] = det["class_id"][i, rows]
        return Targets(y=y, mask=np.ones(n, np.float32))

    def distill_loss(self, soft: Any, y_pred: Any, temperature: float) -> Any:
        """The detection loss with the teacher's boxes as targets."""
        return self.loss(soft, y_pred)

    def evaluate(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        from .coco_eval import coco_map

        m = mask.astype(bool)
        if not m.any():
            return {"map50": float("nan"), "map": float("nan"), "labelled": 0.0}
        raw, truth = y_pred[m].astype(np.float32), y_true[m]
        parts = [{k: v.numpy() for k, v in self._detect(raw[s : s + 512]).items()} for s in range(0, len(raw), 512)]
        det = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        gt = [t[t[:, 4] >= 0] for t in truth]
        metrics = coco_map(gt, det["boxes"], det["scores"], det["class_id"], det["num_detections"],
                           len(self.classes), self.options.max_detections)
        return {**metrics, "detections_per_image": float(det["num_detections"].mean()), "labelled": float(m.sum())}

    def diagnostics(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
        """Each class's precision-recall curve at IoU 0.5 on the labelled validation images (COCO's)."""
        from .coco_eval import RECALL_POINTS, coco_precision

        m = mask.astype(bool)
        if not m.any():
            return {}
        raw, truth = y_pred[m].astype(np.float32), y_true[m]
        parts = [{k: v.numpy() for k, v in self._detect(raw[s : s + 512]).items()} for s in range(0, len(raw), 512)]
        det = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        precision = coco_precision([t[t[:, 4] >= 0] for t in truth], det["boxes"], det["scores"], det["class_id"],
                                   det["num_detections"], len(self.classes), self.options.max_detections)
        if precision is None or not precision.size:
            return {}
        curves = [[float(v) if v > -1 else None for v in precision[0, :, c]] for c in range(len(self.classes))]
        return {"kind": "pr", "classes": list(self.classes), "recall": RECALL_POINTS.tolist(), "precision": curves}

    def postprocess(self, raw: Any) -> dict[str, Any]:
        """Detections with boxes normalised to [0, 1] (see :meth:`postprocess_with_inputs` for pixels)."""
        import tensorflow as tf

        out = self._detect(raw)
        names = tf.constant(self.classes + [""])
        out["label"] = tf.gather(names, tf.where(out["class_id"] >= 0, out["class_id"], len(self.classes)))
        return out

    def portable_postprocess(self, raw: Any) -> dict[str, Any]:
        """ONNX/LiteRT exports stop before non-maximum suppression (no portable kernel for
        TensorFlow's combined NMS): every cell's decoded box and per-class scores."""
        import tensorflow as tf

        from .grid import decode_boxes, split

        obj, box_logits, cls_logits = split(tf.cast(raw, tf.float32))
        scores = tf.sigmoid(obj)[..., None] * tf.nn.softmax(cls_logits, axis=-1)
        return {"candidate_boxes": decode_boxes(box_logits), "candidate_scores": scores}

    def postprocess_with_inputs(self, raw: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Boxes in the input image's pixels: ``[xmin, ymin, xmax, ymax]``."""
        import tensorflow as tf

        out = self.postprocess(raw)
        image = inputs[self._image_input(inputs)]
        shape = tf.cast(tf.shape(image), tf.float32)
        scale = tf.stack([shape[2], shape[1], shape[2], shape[1]])
        out["boxes"] = out["boxes"] * scale
        return out

    def _image_input(self, inputs: Mapping[str, Any]) -> str:
        if self.boxes_input is not None:
            if self.boxes_input not in inputs:
                raise ConfigError(f"{self._owner()}: option 'input' names '{self.boxes_input}', which is not an "
                                  f"input of the model ({', '.join(inputs)})")
            return self.boxes_input
        images = [k for k, v in inputs.items() if len(v.shape) == 4]
        if len(images) != 1:
            raise ConfigError(f"{self._owner()}: the model has {len(images)} image inputs; name the one the boxes "
                              "belong to with option 'input'")
        return images[0]

    @classmethod
    def serving_outputs(cls, entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray],
                        inputs: Mapping[str, Mapping[str, Any]],
                        facts: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Boxes in each image's own pixels, for images that ``automtl predict`` resized to the training size."""
        from .results import rescaled_boxes

        return rescaled_boxes(entry, outputs, inputs, facts)

    @classmethod
    def list_outputs(cls, entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
        """One list of boxes per image (``<task>.detections``) in place of the padded arrays."""
        from .results import list_outputs

        return list_outputs(entry, outputs)

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "classes": list(self.classes),
            "box_format": "xmin, ymin, xmax, ymax in the input image's pixels",
            "outputs_note": "boxes [n, max_detections, 4], scores, class_id (-1 = padding) and label per "
                            "detection; num_detections [n] says how many are real",
            "max_detections": o.max_detections,
            # how `automtl predict` reads the outputs: one list of boxes per image, or COCO results
            "detections": {"boxes": "boxes", "scores": "scores", "labels": "label", "class_ids": "class_id",
                           "count": "num_detections", "image_input": self.boxes_input},
            "category_ids": list(self.category_ids) if getattr(self, "category_ids", None) else
            list(range(1, len(self.classes) + 1)),
            "score_threshold": o.score_threshold,
            "iou_threshold": o.iou_threshold,
            "portable_outputs_note": "ONNX/LiteRT exports return candidate_boxes [n, cells, 4] (xmin, ymin, xmax, "
                                     "ymax normalised to [0, 1]) and candidate_scores [n, cells, classes] "
                                     "(objectness x class probability); apply per-class non-maximum suppression "
                                     "with iou_threshold, score_threshold and max_detections, then scale boxes "
                                     "by the image's width and height",
        }


#: A teacher's detection with at least this score becomes a box target for a student.
PSEUDO_BOX_SCORE = 0.5

_HINT = " (detection annotations come from a COCO JSON file or a CSV with image_path,xmin,ymin,xmax,ymax,label columns)"


def _present(cell: Any) -> bool:
    """An image is labelled for detection unless its objects cell is missing (an empty list is 'no objects')."""
    if cell is None:
        return False
    if isinstance(cell, float):
        return not np.isnan(cell)
    return True
