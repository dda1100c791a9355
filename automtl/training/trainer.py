"""The trial trainer: whole epochs compiled into one ``tf.function`` over in-memory tensors.

Per-step Python and per-epoch set-up dominate small trials under
``Model.fit``; here an epoch (shuffle, batches, steps) is one graph call.
Data above ``AUTOMTL_INMEMORY_MB`` streams through ``tf.data`` instead,
with the same step functions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from automtl.api import InputEncoder, Task
from automtl.errors import TrialFailed
from automtl.model.assemble import Assembled
from automtl.objective import combine
from automtl.params import TrialParams
from automtl.data.prepare import Arrays
from automtl.training.strategies import AlternatingStep, JointStep, gather
from automtl.training.weighting import METHODS, Weighting

INMEMORY_LIMIT_MB = float(os.environ.get("AUTOMTL_INMEMORY_MB", "1024"))
PREDICT_BATCH = 8192


@dataclass
class EpochResult:
    epoch: int
    losses: dict[str, float]
    metrics: dict[str, dict[str, float]]
    scores: dict[str, float]
    objective: float


@dataclass
class FitResult:
    objective: float
    metrics: dict[str, dict[str, float]]
    scores: dict[str, float]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}


class Trainer:
    """Trains one assembled model with one strategy and scores it per epoch."""

    def __init__(
        self,
        assembled: Assembled,
        tasks: Sequence[Task],
        params: TrialParams,
        train: Arrays,
        valid: Arrays,
        importance: dict[str, float],
        seed: int = 0,
        streaming: bool | None = None,
        encoders: Sequence[InputEncoder] = (),
    ) -> None:
        self.model = assembled.model
        self.tasks = list(tasks)
        self.params = params
        self.importance = importance
        self.valid = valid
        self.n = len(train)
        self.batch = max(1, min(params.batch_size, self.n))
        self.steps = math.ceil(self.n / self.batch)
        self.streaming = train.nbytes() > INMEMORY_LIMIT_MB * 2**20 if streaming is None else streaming
        self.rng = tf.random.Generator.from_seed(seed)
        self.np_rng = np.random.default_rng(seed)
        self.train_arrays = train
        self.augmenters = [e for e in encoders if type(e).augment is not InputEncoder.augment]
        names = [t.name for t in self.tasks]
        self.weighting: Weighting | None = None
        if params.strategy == "joint":
            method = str(params.get("weighting", "static"))
            if method not in METHODS:
                raise TrialFailed(f"unknown weighting '{method}'; known: {', '.join(METHODS)}")
            self.weighting = METHODS[method](
                names, [params.loss_weight(t) for t in names],
                alpha=float(params.get("gradnorm_alpha", 1.5)), temperature=float(params.get("dwa_temperature", 2.0)),
            )
            self.step = JointStep(assembled, self.tasks, self.weighting, params.learning_rate)
        elif params.strategy == "alternating":
            self.step = AlternatingStep(assembled, self.tasks, [params.task_learning_rate(t) for t in names])
            self.labelled = [np.flatnonzero(_example_mask(train.mask[t])) for t in names]
            self.task_probs = sampling_probabilities(
                [params.task_prob(t) for t in names], [len(ix) for ix in self.labelled],
                str(params.get("task_sampling", "uniform")))
        else:
            raise TrialFailed(f"unknown strategy '{params.strategy}'")
        if not self.streaming:
            self._x, self._y, self._m = to_tensors(train.x), to_tensors(train.y), to_tensors(train.mask)
        self._valid_x = to_tensors(valid.x)
        self._epoch_fn = self._build_epoch()
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    # -- epochs ---------------------------------------------------------------------------
    def _augment(self, x: dict, y: dict, m: dict) -> tuple[dict, dict, dict]:
        """Training-time batch augmentation by the input plugins that define it."""
        for enc in self.augmenters:
            x, y = enc.augment(x, y, self.params, self.rng)
        return x, y, m

    def _build_epoch(self) -> Callable[[], tf.Tensor]:
        if self.streaming:
            return self._streamed_epoch
        T = len(self.tasks)
        n, bs, steps = self.n, self.batch, self.steps
        x, y, m, rng = self._x, self._y, self._m, self.rng
        if isinstance(self.step, JointStep):
            step = self.step

            @tf.function
            def epoch() -> tf.Tensor:
                perm = tf.argsort(rng.uniform([n]))
                total = tf.zeros([T])
                for i in tf.range(steps):
                    idx = perm[i * bs : (i + 1) * bs]
                    total += step(*self._augment(gather(x, idx), gather(y, idx), gather(m, idx)))
                return total / steps

            return epoch
        alt = self.step
        labelled = [tf.constant(ix, tf.int64) for ix in self.labelled]
        cum = tf.constant(np.cumsum(self.task_probs)[:-1], tf.float32)

        def batch_for(i: int):
            pick = rng.uniform([bs], 0, max(1, len(self.labelled[i])), dtype=tf.int64)
            idx = tf.gather(labelled[i], pick)
            return self._augment(gather(x, idx), gather(y, idx), gather(m, idx))

        @tf.function
        def alt_epoch() -> tf.Tensor:
            total, counts = tf.zeros([T]), tf.zeros([T])
            for _ in tf.range(steps):
                task = tf.searchsorted(cum, rng.uniform([1]), side="right")[0]
                total += alt.switch(tf.cast(task, tf.int32), batch_for)
                counts += tf.one_hot(task, T)
            return total / tf.maximum(counts, 1.0)

        return alt_epoch

    def _streamed_epoch(self) -> tf.Tensor:
        """Data too large to hold as constants: shuffled, prefetched ``tf.data`` batches."""
        if not hasattr(self, "_dataset"):
            a = self.train_arrays
            ds = tf.data.Dataset.from_tensor_slices((to_tensors(a.x), to_tensors(a.y), to_tensors(a.mask)))
            self._dataset = ds.shuffle(min(self.n, 65536), reshuffle_each_iteration=True).batch(self.batch).prefetch(tf.data.AUTOTUNE)
            if isinstance(self.step, JointStep):
                self._step_fn = tf.function(lambda x, y, m: self.step(*self._augment(x, y, m)))
            else:
                self._branch_fns = [tf.function(lambda x, y, m, i=i: self.step.branch(i, *self._augment(x, y, m)))
                                    for i in range(len(self.tasks))]
        T = len(self.tasks)
        total, counts = np.zeros(T), np.zeros(T)
        for xb, yb, mb in self._dataset:
            if isinstance(self.step, JointStep):
                total += self._step_fn(xb, yb, mb).numpy()
                counts += 1
            else:
                i = int(self.np_rng.choice(T, p=self.task_probs))
                total += self._branch_fns[i](xb, yb, mb).numpy()
                counts[i] += 1
        return tf.constant(total / np.maximum(counts, 1), tf.float32)

    # -- evaluation -----------------------------------------------------------------------
    def predict(self, x: dict[str, tf.Tensor], n: int) -> dict[str, np.ndarray]:
        chunks = []
        for start in range(0, n, PREDICT_BATCH):
            part = {k: v[start : start + PREDICT_BATCH] for k, v in x.items()}
            chunks.append({k: v.numpy() for k, v in self._predict(part).items()})
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def evaluate(self) -> tuple[dict[str, dict[str, float]], dict[str, float], float]:
        pred = self.predict(self._valid_x, len(self.valid))
        metrics, scores = {}, {}
        for t in self.tasks:
            metrics[t.name] = t.evaluate(self.valid.y[t.name], self.valid.mask[t.name], pred[t.name].astype(np.float64))
            scores[t.name] = float(t.score(metrics[t.name]))
        return metrics, scores, combine(scores, self.importance)

    # -- the loop -------------------------------------------------------------------------
    def fit(self, epochs: int, patience: int | None = None, report: Callable[[EpochResult], None] | None = None) -> FitResult:
        best: FitResult | None = None
        best_weights: list[np.ndarray] | None = None
        history: list[dict[str, float]] = []
        since_best = 0
        for epoch in range(1, epochs + 1):
            losses = self._epoch_fn().numpy()
            names = [t.name for t in self.tasks]
            if not np.all(np.isfinite(losses)):
                bad = [n for n, l in zip(names, losses) if not np.isfinite(l)]
                raise TrialFailed(f"non-finite training loss for task(s) {bad} at epoch {epoch}")
            if self.weighting is not None:
                self.weighting.end_epoch(losses)
            metrics, scores, objective = self.evaluate()
            row = {"epoch": epoch, "objective": objective}
            row.update({f"loss.{n}": float(l) for n, l in zip(names, losses)})
            if self.weighting is not None:
                row.update({f"weight.{n}": float(w) for n, w in zip(names, self.weighting.effective_weights())})
            row.update({f"{t}.{k}": v for t, ms in metrics.items() for k, v in ms.items()})
            history.append(row)
            if best is None or (np.isfinite(objective) and not objective <= best.objective):
                best = FitResult(objective, metrics, scores, epoch)
                best_weights = self.model.get_weights()
                since_best = 0
            else:
                since_best += 1
            if report is not None:
                report(EpochResult(epoch, dict(zip(names, map(float, losses))), metrics, scores, objective))
            if patience is not None and since_best >= patience:
                break
        assert best is not None and best_weights is not None
        if best.best_epoch != len(history):
            self.model.set_weights(best_weights)  # restore the best epoch's weights
        if not np.isfinite(best.objective):
            raise TrialFailed("the validation objective is not finite")
        best.history = history
        return best


def sampling_probabilities(relative: Sequence[float], labelled: Sequence[int], mode: str) -> np.ndarray:
    """Chance of each task being picked per alternating step.

    ``uniform``: by the relative ``task_prob`` alone; ``proportional``: also
    times the task's number of labelled examples. Tasks without labels never run.
    """
    if mode not in ("uniform", "proportional"):
        raise TrialFailed(f"unknown task_sampling '{mode}'; expected uniform or proportional")
    counts = np.asarray(labelled, np.float64)
    weights = np.asarray(relative, np.float64) * (counts if mode == "proportional" else 1.0)
    weights = np.where(counts > 0, weights, 0.0)
    return weights / weights.sum()


def _example_mask(mask: np.ndarray) -> np.ndarray:
    return mask.reshape(len(mask), -1).max(axis=1) > 0
