"""The trial trainer: whole epochs compiled into one ``tf.function`` over in-memory tensors.

Per-step Python and per-epoch set-up dominate small trials under
``Model.fit``; here an epoch (shuffle, batches, steps) is one graph call.
Data above ``AUTOMTL_INMEMORY_MB``, or with an input read from disk per batch
(images streamed from their files), streams through ``tf.data`` instead, with
the same step functions (see :mod:`automtl.training.streams`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from automtl.plugin_base import InputEncoder, Task
from automtl.core import registry
from automtl.core.trial_params import TrialParams
from automtl.data.arrays import Arrays
from automtl.data.streamed import memory_budget_bytes
from automtl.errors import TrialFailed
from automtl.model.assemble import Assembled
from automtl.objective import combine
from automtl.training.cost import EpochPlan
from automtl.training.schedules import SCHEDULES, lr_factor
from automtl.training.strategies.base import Strategy

INMEMORY_LIMIT_MB = memory_budget_bytes() / 2**20
PREDICT_BATCH = 8192
#: Rows per prediction batch for streamed inputs (images): a few training batches.
STREAMED_PREDICT_BATCHES = 4


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
    #: the kept epoch's raw outputs on the validation rows, per task (for ensemble selection)
    valid_pred: dict[str, np.ndarray] = field(default_factory=dict)
    #: why training ended before its epochs and patience ran out ("" when it did not), e.g. the time budget
    stopped: str = ""
    #: the epochs its learning-rate schedule spanned (fewer than the limit when a time budget planned it down)
    planned: int = 0


#: Images at least this many pixels (height x width) train step by step on CPU (see Trainer).
STEPWISE_IMAGE_PIXELS = 48 * 48


def _large_images(arrays: Arrays) -> bool:
    return any(v.ndim == 4 and v.shape[1] * v.shape[2] >= STEPWISE_IMAGE_PIXELS for v in arrays.x.values())


#: Why a trial ends early when the search's deadline passes (``--timeout``).
TIME_UP = "the search's time budget ran out"


def time_is_up(deadline: float | None) -> bool:
    """``deadline`` is wall-clock seconds (``time.time()``), so it means the same in every process."""
    return deadline is not None and time.time() >= deadline


def check_started_in_time(deadline: float | None) -> None:
    """A trial that would start its first epoch after the deadline fails (it has nothing to keep)."""
    if time_is_up(deadline):
        raise TrialFailed(f"{TIME_UP} before this trial finished an epoch")


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
        valid: Arrays | None,
        importance: dict[str, float],
        seed: int = 0,
        streaming: bool | None = None,
        encoders: Sequence[InputEncoder] = (),
    ) -> None:
        self.assembled = assembled
        self.model = assembled.model
        self.tasks = list(tasks)
        self.params = params
        self.importance = importance
        self.valid = valid
        self.n = len(train)
        self.batch = max(1, min(params.batch_size, self.n))
        self.steps = math.ceil(self.n / self.batch)
        self.streaming = train.nbytes() > INMEMORY_LIMIT_MB * 2**20 if streaming is None else streaming
        self.streaming = self.streaming or train.streamed  # inputs read from disk always stream
        if streaming is None and not self.streaming and _large_images(train) and not tf.config.list_logical_devices("GPU"):
            # On CPU, convolutions over 64x64 images ran 1.3-1.6x faster step by step (tf.data) than
            # inside the compiled epoch loop (bench/trial_speed.py image64, bench/image_pipeline.py);
            # 28x28 images and tabular data run faster in the loop.
            self.streaming = True
        self.rng = tf.random.Generator.from_seed(seed)
        self.np_rng = np.random.default_rng(seed)
        self.augmenters = [e for e in encoders if type(e).augment is not InputEncoder.augment]
        if params.lr_schedule not in SCHEDULES:
            raise TrialFailed(f"unknown lr_schedule '{params.lr_schedule}'; known: {', '.join(SCHEDULES)}")
        strategy = registry.member("strategy", params.strategy)
        self.strategy: Strategy = strategy(assembled, self.tasks, params, train, self.rng, self.np_rng, self._augment)
        self.weighting = self.strategy.weighting
        if self.streaming:
            from automtl.training.streams import training_batches

            dataset = training_batches(train, self.batch, seed)
            self._epoch_fn = lambda: tf.constant(self.strategy.streamed_epoch(dataset), tf.float32)
        else:
            x, y, m = to_tensors(train.x), to_tensors(train.y), to_tensors(train.mask)
            self._epoch_fn = self.strategy.in_memory_epoch(x, y, m, self.batch, self.steps)
        # None: a refit, never scored; streamed validation inputs are batched at evaluation
        self._valid_x = None if valid is None or valid.streamed else to_tensors(valid.x)
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def _augment(self, x: dict, y: dict, m: dict) -> tuple[dict, dict, dict]:
        """Training-time batch augmentation by the input plugins that define it."""
        for enc in self.augmenters:
            x, y = enc.augment(x, y, self.params, self.rng)
        return x, y, m

    # -- evaluation -----------------------------------------------------------------------
    def predict(self, x: dict[str, tf.Tensor], n: int) -> dict[str, np.ndarray]:
        chunks = []
        for start in range(0, n, PREDICT_BATCH):
            part = {k: v[start : start + PREDICT_BATCH] for k, v in x.items()}
            chunks.append({k: v.numpy() for k, v in self._predict(part).items()})
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def predict_batches(self, batches: tf.data.Dataset) -> dict[str, np.ndarray]:
        """Predictions over a dataset of input batches (streamed images), in its order."""
        run = getattr(self, "_predict_batch", self._predict)
        chunks = [{k: v.numpy() for k, v in run(part).items()} for part in batches]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def evaluate(self) -> tuple[dict[str, dict[str, float]], dict[str, float], float]:
        if self._valid_x is None:
            if not hasattr(self, "_valid_batches"):
                from automtl.training.streams import ordered_batches

                size = max(1, STREAMED_PREDICT_BATCHES * self.batch)
                self._valid_batches = ordered_batches(self.valid.x, len(self.valid), size)
                self._predict_batch = tf.function(lambda x: self.model(x, training=False),
                                                  input_signature=[self._valid_batches.element_spec])
            pred = self.predict_batches(self._valid_batches)
        else:
            pred = self.predict(self._valid_x, len(self.valid))
        self.last_pred = pred
        metrics, scores = {}, {}
        for t in self.tasks:
            metrics[t.name] = t.evaluate(self.valid.y[t.name], self.valid.mask[t.name], pred[t.name].astype(np.float64))
            scores[t.name] = float(t.score(metrics[t.name]))
        return metrics, scores, combine(scores, self.importance)

    def set_learning_rates(self, epoch: int, epochs: int) -> None:
        """Every optimizer's rate for ``epoch`` (0-based) under the trial's ``lr_schedule``."""
        factor = lr_factor(self.params.lr_schedule, epoch, epochs)
        for optimizer in self.strategy.optimizers:
            optimizer.scale_learning_rate(factor)

    # -- the loop -------------------------------------------------------------------------
    def train_epoch(self, epoch: int, epochs: int) -> tuple[EpochResult, dict[str, float]]:
        """Train epoch ``epoch`` (1-based) of ``epochs`` and score it: the result and its ``history.json`` row."""
        self.set_learning_rates(epoch - 1, epochs)
        losses = self._epoch_fn().numpy()
        names = [t.name for t in self.tasks]
        if not np.all(np.isfinite(losses)):
            bad = [n for n, l in zip(names, losses) if not np.isfinite(l)]
            raise TrialFailed(f"non-finite training loss for task(s) {bad} at epoch {epoch}")
        if self.weighting is not None:
            self.weighting.end_epoch(losses)
        metrics, scores, objective = self.evaluate()
        row = {"epoch": epoch, "objective": objective}
        if epoch == 1:
            row.update(self.strategy.notes)
        row.update({f"loss.{n}": float(l) for n, l in zip(names, losses)})
        if self.weighting is not None:
            row.update(self.weighting.epoch_record())  # effective weights (and task-gradient statistics)
        row.update({f"{t}.{k}": v for t, ms in metrics.items() for k, v in ms.items()})
        return EpochResult(epoch, dict(zip(names, map(float, losses))), metrics, scores, objective), row

    def fit(self, epochs: int, patience: int | None = None, report: Callable[[EpochResult], None] | None = None,
            deadline: float | None = None, seconds: float | None = None) -> FitResult:
        """Train up to ``epochs``, keep the best epoch by the objective, stop after ``patience`` epochs
        without a better one; past ``deadline`` stop at the epoch's end. A task whose path is its own (no
        trainable variable shared with another task: ``none`` or ``soft`` sharing) is a separate model
        inside this one, so it keeps its own best epoch, and training goes on while it still improves, as
        it would trained alone. ``seconds``: the trial's share of a time budget, which plans its epochs
        (:class:`~automtl.training.cost.EpochPlan`)."""
        plan = EpochPlan(epochs, seconds)
        best: FitResult | None = None
        best_weights: list[np.ndarray] | None = None
        history: list[dict[str, float]] = []
        since_best = 0
        stopped = ""
        check_started_in_time(deadline)
        own = {t: self.assembled.task_weights(t) for t in self.assembled.own_path_tasks()}
        own_best: dict[str, tuple[float, int, list[np.ndarray]]] = {}
        since_own = dict.fromkeys(own, 0)
        epoch = 0
        while epoch < plan.planned:
            epoch += 1
            started = time.perf_counter()
            result, row = self.train_epoch(epoch, plan.planned)
            plan.done(time.perf_counter() - started)
            metrics, scores, objective = result.metrics, result.scores, result.objective
            history.append(row)
            if best is None or (np.isfinite(objective) and not objective <= best.objective):
                best = FitResult(objective, metrics, scores, epoch, valid_pred=self.last_pred)
                best_weights = self.model.get_weights()
                since_best = 0
            else:
                since_best += 1
            for t, weights in own.items():
                if t not in own_best or (np.isfinite(scores[t]) and not scores[t] <= own_best[t][0]):
                    own_best[t] = (scores[t], epoch, [np.array(w.numpy()) for w in weights])
                    since_own[t] = 0
                else:
                    since_own[t] += 1
            if report is not None:
                report(result)
            if patience is not None and since_best >= patience and all(n >= patience for n in since_own.values()):
                break
            if epoch < plan.planned and time_is_up(deadline):
                stopped = f"{TIME_UP} after epoch {epoch}"
                break
        stopped = stopped or plan.note
        assert best is not None and best_weights is not None
        if best.best_epoch != len(history):
            self.model.set_weights(best_weights)  # restore the best epoch's weights
        moved = {t: e for t, (_, e, _) in own_best.items() if e != best.best_epoch}
        for t in moved:  # then each own-path task's best epoch, and the metrics of the model so made
            for w, value in zip(own[t], own_best[t][2]):
                w.assign(value)
        if moved:
            metrics, scores, objective = self.evaluate()
            history[-1]["task_best_epochs"] = {t: e for t, (_, e, _) in own_best.items()}
            best = FitResult(objective, metrics, scores, best.best_epoch, valid_pred=self.last_pred)
        if not np.isfinite(best.objective):
            raise TrialFailed("the validation objective is not finite")
        best.history = history
        best.stopped = stopped
        best.planned = plan.planned
        return best

    def fit_epochs(self, epochs: int, schedule_epochs: int | None = None) -> None:
        """Train exactly ``epochs`` epochs with no validation (the refit on every training row).

        ``schedule_epochs``: the epoch budget the learning-rate schedule spans
        (the trial's), so a refit for the best epoch count sees the rates the
        trial saw in those epochs.
        """
        names = [t.name for t in self.tasks]
        for epoch in range(1, epochs + 1):
            self.set_learning_rates(epoch - 1, max(schedule_epochs or epochs, epochs))
            losses = self._epoch_fn().numpy()
            if not np.all(np.isfinite(losses)):
                bad = [n for n, l in zip(names, losses) if not np.isfinite(l)]
                raise TrialFailed(f"non-finite training loss for task(s) {bad} at epoch {epoch}")
            if self.weighting is not None:
                self.weighting.end_epoch(losses)

