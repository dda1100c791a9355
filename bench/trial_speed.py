"""Per-trial training time: automtl's trial runner vs keras Model.fit vs a bare tf.function loop.

Same architecture, epochs and batch size, measured side by side in one
process. The tabular case is the digits demo (a dense trunk); it also
compares the streamed (tf.data) path with Model.fit. The image cases are the
same digits as 28x28 and 64x64 images through the image input's conv trunk
(2 stages of 16 and 32 filters). One machine-readable line per case:
``<case>: automtl vs Model.fit: N.Nx faster; automtl vs bare loop: M.Mx``.
``--cases tabm`` times the TabM trunk (``trunk.kind: tabm``, k members sharing
the dense weights) against the plain MLP of the same width and depth on the
digits demo, one line per k: ``tabm k=K vs mlp: N.Nx the time per epoch``.
``--text`` adds the text case: the text demo's intent + slot requests
(``--text-rows`` training rows), one trial per sequence encoder (conv, bigru,
transformer) under automtl's trial runner and under ``Model.fit`` on the same
model, with the sequence length automtl picks (95th percentile of the
training lengths); ``--text-only`` runs only that case.

    python bench/trial_speed.py [--epochs 20] [--repeats 3] [--cases tabular,image28,image64,tabm]
                                [--text] [--text-only] [--text-rows 10000] [--text-epochs 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_prepared  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from automtl.core.trial_params import TrialParams  # noqa: E402
from automtl.model.assemble import build_model  # noqa: E402
from automtl.training.trainer import Trainer, to_tensors  # noqa: E402

PARAMS = {"trunk.depth": 2, "trunk.units": 128, "head.units": 64, "head.depth": 1, "dropout": 0.1,
          "learning_rate": 1e-3, "batch_size": 64, "strategy": "joint"}
IMAGE_PARAMS = {"image.backbone": "conv", "image.stages": 2, "image.filters": 16, "trunk.depth": 1, "trunk.units": 64,
                "head.units": 32, "head.depth": 1, "dropout": 0.1, "learning_rate": 1e-3, "batch_size": 64,
                "strategy": "joint"}


def image_prepared(side: int):
    """The digits demo's images (8x8, scikit-learn) upscaled to ``side`` pixels, as uint8 NPZ-style arrays,
    with the demo's two tasks; prepared as a search would."""
    import numpy as np
    from sklearn.datasets import load_digits

    from automtl.data.arrays import Prepared, to_arrays
    from automtl.data.demo import digit_slant
    from automtl.data.split import split_fraction
    from automtl.data.table import Table
    from automtl_classification import ClassificationTask
    from automtl_image import ImageInput
    from automtl_regression import RegressionTask

    digits = load_digits()
    small = (digits.images * (255 / 16)).astype(np.float32)[..., None]
    pixels = tf.cast(tf.round(tf.image.resize(small, (side, side), antialias=True)), tf.uint8).numpy()
    table = Table("digits.npz", {"pixels": pixels, "digit": digits.target, "slant": digit_slant(digits.images)})
    train_t, valid_t = split_fraction(table, 0.2, 0)
    encoders = [ImageInput("pixels", {"array": "pixels"})]
    tasks = [ClassificationTask("digit", {"target": "digit"}), RegressionTask("slant", {"target": "slant"})]
    for plugin in (*encoders, *tasks):
        plugin.prepare(train_t)
    return Prepared(experiment=None, encoders=encoders, tasks=tasks, train=to_arrays(encoders, tasks, train_t),
                    valid=to_arrays(encoders, tasks, valid_t), importance={t.name: 1.0 for t in tasks})


def fresh(prep, seed: int = 0):
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    params = TrialParams(prep.bench_params)
    return params, build_model(prep.encoders, prep.tasks, params)


def run_automtl(prep, epochs: int, streaming: bool = False) -> float:
    """One trial; ``streaming`` False: the compiled epoch loop over in-memory tensors, True: tf.data steps."""
    start = time.perf_counter()
    params, assembled = fresh(prep)
    trainer = Trainer(assembled, prep.tasks, params, prep.train, prep.valid, prep.importance, streaming=streaming,
                      encoders=prep.encoders)
    trainer.fit(epochs, patience=None)
    return time.perf_counter() - start


def keras_losses(prep):
    losses = {}
    for t in prep.tasks:
        if getattr(t, "classes", None) is not None:
            losses[t.name] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        else:
            losses[t.name] = keras.losses.MeanSquaredError()
    return losses


def run_fit(prep, epochs: int) -> float:
    start = time.perf_counter()
    params, assembled = fresh(prep)
    model = assembled.model
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=keras_losses(prep),
                  loss_weights={t.name: 1.0 for t in prep.tasks})
    model.fit(prep.train.x, prep.train.y, batch_size=params.batch_size, epochs=epochs,
              validation_data=(prep.valid.x, prep.valid.y), verbose=0, shuffle=True)
    return time.perf_counter() - start


def run_bare(prep, epochs: int) -> float:
    """The floor: a hand-written epoch loop in one tf.function, no masks, no metrics."""
    start = time.perf_counter()
    params, assembled = fresh(prep)
    model = assembled.model
    losses = keras_losses(prep)
    opt = keras.optimizers.Adam(params.learning_rate)
    opt.build(model.trainable_variables)
    x, y = to_tensors(prep.train.x), to_tensors(prep.train.y)
    vx = to_tensors(prep.valid.x)
    n, bs = len(prep.train), params.batch_size
    steps = -(-n // bs)

    @tf.function
    def epoch():
        perm = tf.random.shuffle(tf.range(n))
        for i in tf.range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            xb = {k: tf.gather(v, idx) for k, v in x.items()}
            with tf.GradientTape() as tape:
                out = model(xb, training=True)
                loss = tf.add_n([losses[k](tf.gather(y[k], idx), out[k]) for k in out])
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))

    predict = tf.function(lambda v: model(v, training=False))
    for _ in range(epochs):
        epoch()
        {k: v.numpy() for k, v in predict(vx).items()}  # per-epoch validation, as the others do
    return time.perf_counter() - start


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: first-time imports and kernel loading are not per-trial costs
    return statistics.median(fn() for _ in range(repeats))


def breakdown(prep, epochs: int) -> str:
    """Where one automtl trial's time goes: building, the first epoch (tracing), later epochs, validation."""
    start = time.perf_counter()
    params, assembled = fresh(prep)
    trainer = Trainer(assembled, prep.tasks, params, prep.train, prep.valid, prep.importance, encoders=prep.encoders)
    built = time.perf_counter()
    trainer._epoch_fn().numpy()
    first = time.perf_counter()
    for _ in range(epochs - 1):
        trainer._epoch_fn().numpy()
    later = time.perf_counter()
    for _ in range(epochs):
        trainer.evaluate()
    done = time.perf_counter()
    return (f"  automtl trial: build {built - start:.2f}s, first epoch (tracing) {first - built:.2f}s, "
            f"later epochs {1000 * (later - first) / max(1, epochs - 1):.0f} ms each, "
            f"validation {1000 * (done - later) / epochs:.0f} ms per epoch")


def default_path(prep) -> bool:
    """Whether the trainer, left to choose, streams this data (step by step) or runs its compiled epoch loop."""
    params, assembled = fresh(prep)
    return Trainer(assembled, prep.tasks, params, prep.train, prep.valid, prep.importance,
                   encoders=prep.encoders).streaming


def run_case(name: str, prep, epochs: int, repeats: int) -> None:
    t_auto = median_time(lambda: run_automtl(prep, epochs), repeats)
    t_stream = median_time(lambda: run_automtl(prep, epochs, streaming=True), repeats)
    t_fit = median_time(lambda: run_fit(prep, epochs), repeats)
    t_bare = median_time(lambda: run_bare(prep, epochs), repeats)
    rows = [("automtl trial runner (in memory)", t_auto), ("automtl trial runner (streamed tf.data)", t_stream),
            ("keras Model.fit", t_fit), ("bare tf.function loop", t_bare)]
    for label, t in rows:
        print(f"  {label:<42} {t:7.2f} s/trial  {1000 * t / epochs:7.1f} ms/epoch")
    print(f"  streamed automtl vs Model.fit: {t_fit / t_stream:.1f}x faster")
    print(breakdown(prep, epochs))
    streams = default_path(prep)
    chosen = t_stream if streams else t_auto
    print(f"{name}: automtl vs Model.fit: {t_fit / chosen:.1f}x faster (the trainer's own choice: "
          f"{'streamed, step by step' if streams else 'in memory, compiled epoch loop'}); "
          f"automtl vs bare loop: {chosen / t_bare:.1f}x", flush=True)


#: Members of the TabM trunks timed against the plain MLP (the paper's default is 32).
TABM_MEMBERS = (8, 16, 32)


def tabm_case(epochs: int, repeats: int) -> None:
    """The TabM trunk's time per epoch against the plain MLP of the same width (the trainer's own path)."""
    prep = demo_prepared()
    print(f"tabm (digits demo): {len(prep.train)} training rows, batch {PARAMS['batch_size']}, {epochs} epochs, "
          f"trunk {PARAMS['trunk.depth']}x{PARAMS['trunk.units']}; median of {repeats} trials each")
    def timed(params: dict) -> tuple[float, float]:
        prep.bench_params = params
        trial = median_time(lambda: run_automtl(prep, epochs), repeats)
        return trial, median_time(lambda: later_epochs(prep, epochs), repeats)

    t_mlp, e_mlp = timed({**PARAMS, "trunk.kind": "mlp"})
    print(f"  {'mlp':<10} {t_mlp:7.2f} s/trial  {1000 * e_mlp:7.1f} ms per epoch after the first")
    for k in TABM_MEMBERS:
        t, e_k = timed({**PARAMS, "trunk.kind": "tabm", "tabm.k": k})
        print(f"  {'tabm k=' + str(k):<10} {t:7.2f} s/trial  {1000 * e_k:7.1f} ms per epoch after the first")
        print(f"tabm k={k} vs mlp: {e_k / e_mlp:.1f}x the time per epoch, {t / t_mlp:.1f}x per trial", flush=True)


def later_epochs(prep, epochs: int) -> float:
    """Seconds per training epoch once traced (the first epoch traces the graph), validation left out."""
    params, assembled = fresh(prep)
    trainer = Trainer(assembled, prep.tasks, params, prep.train, prep.valid, prep.importance, encoders=prep.encoders)
    trainer._epoch_fn().numpy()
    start = time.perf_counter()
    for _ in range(max(1, epochs - 1)):
        trainer._epoch_fn().numpy()
    return (time.perf_counter() - start) / max(1, epochs - 1)


TEXT_PARAMS = {"trunk.depth": 1, "trunk.units": 64, "head.units": 32, "head.depth": 1, "dropout": 0.1,
               "learning_rate": 3e-3, "batch_size": 64, "strategy": "joint", "text.embedding": 64}


def text_prepared(rows: int):
    import tempfile

    from automtl.config import load_experiment
    from automtl.data.prepare import instantiate, prepare
    from automtl_text.demo import text_demo

    folder = Path(tempfile.mkdtemp(prefix="automtl-bench-text-"))
    exp = load_experiment(text_demo(folder, n_train=rows, n_valid=max(200, rows // 5)), {"out": folder / "run"})
    encoders, tasks = instantiate(exp)
    return prepare(exp, encoders, tasks)


def text_trial(prep, encoder: str, epochs: int, use_fit: bool) -> float:
    """Seconds for one trial: build, then ``epochs`` epochs each followed by validation predictions."""
    start = time.perf_counter()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    params = TrialParams({**TEXT_PARAMS, "text.encoder": encoder})
    assembled = build_model(prep.encoders, prep.tasks, params)
    if not use_fit:
        trainer = Trainer(assembled, prep.tasks, params, prep.train, prep.valid, prep.importance)
        trainer.fit(epochs, patience=None)
        return time.perf_counter() - start
    model = assembled.model
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss={t.name: t.loss for t in prep.tasks})
    x = to_tensors(prep.train.x)
    model.fit(x, prep.train.y, sample_weight={t.name: prep.train.mask[t.name] for t in prep.tasks},
              batch_size=params.batch_size, epochs=epochs, verbose=0, shuffle=True,
              validation_data=(to_tensors(prep.valid.x), prep.valid.y))
    return time.perf_counter() - start


def text_case(rows: int, epochs: int) -> None:
    prep = text_prepared(rows)
    enc = prep.encoders[0]
    print(f"\ntext demo: {len(prep.train)} training rows, sequence length {enc.sequence_length} "
          f"(95th percentile of training lengths; longest {enc.longest}), batch {TEXT_PARAMS['batch_size']}, "
          f"{epochs} epochs, encoder width {TEXT_PARAMS['trunk.units']}; one trial each after a warm-up")
    text_trial(prep, "conv", 1, False)  # warm-up: imports, kernels
    for encoder in ("conv", "transformer", "bigru"):
        t_auto = text_trial(prep, encoder, epochs, False)
        t_fit = text_trial(prep, encoder, epochs, True)
        print(f"{encoder:<12} automtl {t_auto:7.1f} s/trial ({t_auto / epochs:5.1f} s/epoch)   Model.fit {t_fit:7.1f} s "
              f"({t_fit / epochs:5.1f} s/epoch)   automtl vs fit: {t_fit / t_auto:.1f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="tabular,image28,image64", help="comma-separated: tabular, image28, image64, tabm")
    ap.add_argument("--text", action="store_true", help="also time text trials (conv, bigru, transformer)")
    ap.add_argument("--text-only", action="store_true", help="only the text case")
    ap.add_argument("--text-rows", type=int, default=10000)
    ap.add_argument("--text-epochs", type=int, default=3)
    args = ap.parse_args()
    if args.text_only:
        text_case(args.text_rows, args.text_epochs)
        return
    e, r = args.epochs, args.repeats
    gc.collect()
    gc.freeze()  # as automtl's trial runner does: per-trial clean-up skips long-lived objects
    for case in args.cases.split(","):
        if case == "tabular":
            prep = demo_prepared()
            prep.bench_params = PARAMS
            print(f"tabular (digits demo): {len(prep.train)} training rows, batch {PARAMS['batch_size']}, {e} epochs, "
                  f"trunk {PARAMS['trunk.depth']}x{PARAMS['trunk.units']}; median of {r} trials each")
            run_case(case, prep, e, r)
        elif case.startswith("image"):
            side = int(case[len("image"):])
            prep = image_prepared(side)
            prep.bench_params = IMAGE_PARAMS
            print(f"{case} (digits as {side}x{side} images): {len(prep.train)} training images, batch "
                  f"{IMAGE_PARAMS['batch_size']}, {e} epochs, conv trunk {IMAGE_PARAMS['image.stages']} stages from "
                  f"{IMAGE_PARAMS['image.filters']} filters; median of {r} trials each")
            run_case(case, prep, e, r)
        elif case == "tabm":
            tabm_case(e, r)
        else:
            raise SystemExit(f"unknown case {case!r}; expected tabular, image28, image64 or tabm")
    if args.text:
        text_case(args.text_rows, args.text_epochs)


if __name__ == "__main__":
    main()
