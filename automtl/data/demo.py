"""The ``digits`` demo, made from data that ships inside scikit-learn.

A demo is written out as an ordinary experiment file plus data, so a user can
open, copy and edit exactly what the demo ran. Demos register under the
``automtl.demos`` entry-point group (the detection and text demos live in
their plugins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def digit_slant(images: np.ndarray) -> np.ndarray:
    """Horizontal shear of each digit's ink (second moments): a geometric, non-linear target."""
    h, w = images.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    mass = images.sum(axis=(1, 2))
    cx = (images * xs).sum(axis=(1, 2)) / mass
    cy = (images * ys).sum(axis=(1, 2)) / mass
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    mu11 = (images * dx * dy).sum(axis=(1, 2))
    mu02 = (images * dy * dy).sum(axis=(1, 2))
    return mu11 / mu02


def digits_demo(folder: Path) -> Path:
    """Scikit-learn's 8x8 digits: classify the digit and regress its slant, from the same pixels."""
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.float32), columns=[f"px{i}" for i in range(64)])
    frame["digit"] = digits.target
    frame["slant"] = np.round(digit_slant(digits.images), 5)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "digits.csv", index=False)
    experiment = {
        "name": "digits",
        "data": {"train": "digits.csv", "valid_fraction": 0.2, "split_seed": 0},
        "inputs": [{"name": "pixels", "type": "tabular", "numeric": ["px*"]}],
        "tasks": [
            {"name": "digit", "type": "classification", "target": "digit"},
            {"name": "slant", "type": "regression", "target": "slant"},
        ],
        "space": "default",
        "search": {"trials": 30, "epochs": 30, "patience": 8},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path
