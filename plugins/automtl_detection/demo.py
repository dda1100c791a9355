"""The ``detection`` demo: scikit-learn's digits placed on larger canvases, several per image.

Written out as PNG files plus a COCO JSON file and an experiment file, so the
demo runs exactly the path a user's own COCO data takes: boxes to detect (the
digits, ten classes) and an image-level task on the same images (how many
digits there are), sharing one convolutional trunk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

#: Canvas side (pixels), digit upscaling factor, images, digits per image (and their chances).
CANVAS = 48
SCALE = 2
IMAGES = 1500
COUNTS, COUNT_P = (0, 1, 2, 3), (0.06, 0.30, 0.34, 0.30)
#: Ink threshold (of 16) that defines a digit's tight box.
INK = 3


def make_canvases(n: int, seed: int = 0, canvas: int = CANVAS, scale: int = SCALE) -> tuple[np.ndarray, list[list[tuple]]]:
    """``uint8 [n, canvas, canvas]`` images and per image its boxes ``(xmin, ymin, xmax, ymax, digit)``.

    Digits do not overlap; each box is the tight box around the digit's ink.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    side = 8 * scale
    images = np.zeros((n, canvas, canvas), np.uint8)
    boxes: list[list[tuple]] = []
    for i in range(n):
        k = int(rng.choice(COUNTS, p=COUNT_P))
        placed: list[tuple[int, int]] = []
        objects = []
        for _ in range(200):  # rejection sampling of non-overlapping spots
            if len(placed) == k:
                break
            x, y = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
            if any(abs(x - px) < side and abs(y - py) < side for px, py in placed):
                continue
            placed.append((x, y))
            d = int(rng.integers(len(digits.images)))
            glyph = np.kron(digits.images[d], np.ones((scale, scale)))
            images[i, y : y + side, x : x + side] = np.round(glyph * (255 / 16)).astype(np.uint8)
            rows, cols = np.nonzero(glyph >= INK)
            objects.append((x + int(cols.min()), y + int(rows.min()), x + int(cols.max()) + 1,
                            y + int(rows.max()) + 1, int(digits.target[d])))
        boxes.append(objects)
    return images, boxes


#: The demo searches the small conv trunk only (the built-in ``detection`` space also offers pretrained
#: backbones, whose ImageNet weights need a download or a weights folder).
DEMO_SPACE = """\
description: >
  The detection demo: the small conv trunk (3 stages, stride 8, which suits
  these 16-pixel digits on 48-pixel canvases), shifts that move the boxes,
  head sizes, learning rate and loss weights; joint training.
parameters:
  image.backbone: conv
  image.stages: 3
  image.filters: {choice: [16, 24, 32]}
  image.flip: false
  image.shift: {choice: [0.0, 0.05]}
  trunk.depth: {int: [0, 1]}
  trunk.units: 64
  strategy: joint
  learning_rate: {float: [2.0e-3, 6.0e-3], log: true}
  batch_size: 32
  dropout: 0.0
  l2: 0.0
per_task:
  head.depth: {int: [1, 2]}
  head.units: {choice: [32, 64]}
  loss_weight: {float: [0.5, 2.0], log: true}
"""


def detection_demo(folder: Path) -> Path:
    """Write PNGs, a COCO JSON file (with a per-image ``count``), the demo's space and the experiment file."""
    from PIL import Image

    folder = Path(folder)
    images, boxes = make_canvases(IMAGES)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    coco: dict = {"images": [], "annotations": [],
                  "categories": [{"id": d + 1, "name": str(d)} for d in range(10)]}
    for i, (img, objects) in enumerate(zip(images, boxes)):
        name = f"images/canvas_{i:05d}.png"
        Image.fromarray(img).save(folder / name)
        coco["images"].append({"id": i + 1, "file_name": name, "width": CANVAS, "height": CANVAS,
                               "count": len(objects)})
        for x0, y0, x1, y1, d in objects:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1, "category_id": d + 1,
                                        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                        "iscrowd": 0})
    (folder / "digits_coco.json").write_text(json.dumps(coco))
    experiment = {
        "name": "detection",
        "data": {"train": "digits_coco.json", "valid_fraction": 0.2, "split_seed": 0},
        "inputs": [{"name": "image", "type": "image"}],
        "tasks": [
            {"name": "digits", "type": "detection"},
            {"name": "count", "type": "classification", "target": "count"},
        ],
        "space": "space.yaml",
        "search": {"trials": 6, "epochs": 15, "patience": 4},
    }
    (folder / "space.yaml").write_text(DEMO_SPACE)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path
