"""Epoch time with images in memory vs streamed from their files vs streamed from an on-disk cache.

Generates a set of PNGs (coloured shapes on noise, several sizes; the task
is the shape), then trains the same conv-trunk model three ways, side by side
in one process, with the image input's ``cache`` option:

- ``memory``: decoded once into memory (the trainer runs its epochs as it chooses: on a CPU, step by
  step for images this size, see ``STEPWISE_IMAGE_PIXELS`` in the trainer);
- ``none``: decoded and resized from the files every epoch (parallel tf.data map, prefetched);
- ``disk``: decoded once into a memory-mapped cache under the run folder, read per batch.

It prints the one-time preparation (decoding) cost and the median epoch time
(training plus validation, the first epoch excluded: it traces), and the
machine-readable ratios ``streamed/memory`` and ``streamed+cache/memory``.

    python bench/image_pipeline.py [--images 5000] [--side 64] [--epochs 4] [--rounds 2]

Each round runs the three ways once, in turn (so load from other processes on
a shared machine hits all three alike); the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PARAMS = {"image.backbone": "conv", "image.stages": 3, "image.filters": 16, "trunk.depth": 1, "trunk.units": 64,
          "head.units": 32, "head.depth": 1, "dropout": 0.0, "learning_rate": 2e-3, "batch_size": 64,
          "strategy": "joint"}
SHAPES = ("square", "disc", "bar")


def write_pngs(folder: Path, n: int, side: int, seed: int = 0) -> Path:
    """``n`` PNGs of ``side`` to ``side + 16`` pixels: a bright square, disc or bar on noise; a CSV of paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = ["image_path,shape"]
    for i in range(n):
        h, w = side + int(rng.integers(0, 17)), side + int(rng.integers(0, 17))
        img = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
        kind = int(rng.integers(0, 3))
        cy, cx, r = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4)), max(3, h // 6)
        ys, xs = np.ogrid[:h, :w]
        if kind == 0:
            mask = (abs(ys - cy) <= r) & (abs(xs - cx) <= r)
        elif kind == 1:
            mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
        else:
            mask = (abs(ys - cy) <= r // 3) & (abs(xs - cx) <= 2 * r)
        img[mask] = rng.integers(150, 256, 3)
        Image.fromarray(img).save(folder / "images" / f"{i:05d}.png")
        rows.append(f"images/{i:05d}.png,{SHAPES[kind]}")
    (folder / "shapes.csv").write_text("\n".join(rows) + "\n")
    return folder / "shapes.csv"


def prepared(csv: Path, side: int, cache: str, cache_dir: Path):
    from automtl.data.arrays import to_arrays
    from automtl.data.readers import read_table
    from automtl.data.split import split_fraction
    from automtl_classification import ClassificationTask
    from automtl_image import ImageInput

    train_t, valid_t = split_fraction(read_table(csv), 0.2, 0)
    enc = ImageInput("image", {"size": [side, side], "cache": cache})
    enc.cache_dir = cache_dir
    task = ClassificationTask("shape", {"target": "shape"})
    start = time.perf_counter()
    for plugin in (enc, task):
        plugin.prepare(train_t)
    train, valid = to_arrays([enc], [task], train_t), to_arrays([enc], [task], valid_t)
    return [enc], [task], train, valid, time.perf_counter() - start


def epoch_times(encoders, tasks, train, valid, epochs: int) -> tuple[list[float], dict]:
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    params = TrialParams(PARAMS)
    trainer = Trainer(build_model(encoders, tasks, params), tasks, params, train, valid, {"shape": 1.0},
                      encoders=encoders)
    stamps = [time.perf_counter()]
    fit = trainer.fit(epochs, patience=None, report=lambda _: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])], {"streaming": trainer.streaming, **fit.metrics["shape"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="automtl-image-bench-"))
    start = time.perf_counter()
    csv = write_pngs(folder, args.images, args.side)
    print(f"{args.images} PNGs of {args.side}-{args.side + 16} px written in {time.perf_counter() - start:.1f}s "
          f"({folder}); model: conv trunk {PARAMS['image.stages']} stages from {PARAMS['image.filters']} filters, "
          f"batch {PARAMS['batch_size']}, images resized to {args.side}x{args.side}; {args.epochs} epochs each")
    from automtl_image.decode import load_files

    load_files([str(folder / "images" / "00000.png")], 3, (8, 8), str)  # TensorFlow's start-up is no one's cost
    results: dict[str, list[float]] = {"memory": [], "none": [], "disk": []}
    for round_ in range(args.rounds):
        if round_ == 0:
            print("round 1 (the disk cache is built here; later rounds reuse it, as later trials do)")
        for cache in results:
            enc, tasks, train, valid, prep_s = prepared(csv, args.side, cache, folder / "run" / "cache")
            times, info = epoch_times(enc, tasks, train, valid, args.epochs)
            steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
            results[cache].append(steady)
            print(f"  cache: {cache:<7} prepare {prep_s:6.1f}s  first epoch {times[0]:6.2f}s  "
                  f"epoch {steady:6.2f}s (median of {len(times) - 1})  streamed={info['streaming']}  "
                  f"valid accuracy {info['accuracy']:.3f}", flush=True)
    results = {k: statistics.median(v) for k, v in results.items()}
    print(f"median epoch over {args.rounds} round(s): memory {results['memory']:.2f}s, streamed {results['none']:.2f}s, "
          f"streamed+cache {results['disk']:.2f}s")
    print(f"streamed/memory: {results['none'] / results['memory']:.2f}x; "
          f"streamed+cache/memory: {results['disk'] / results['memory']:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
