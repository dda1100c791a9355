"""The trial runner: one set of parameter values -> one trained, scored, saved model."""

from __future__ import annotations

import ctypes
import gc
import json
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from automtl.core.trial import TrialHandle, TrialOutcome, TrialPruned, trial_dir
from automtl.core.trial_params import TrialParams
from automtl.data.arrays import Prepared
from automtl.data.subsample import subsample
from automtl.devices import configure, set_precision, trial_device
from automtl.errors import TrialFailed
from automtl.model.assemble import build_model
from automtl.training.cost import MIN_PLANNED_EPOCHS, CostModel, measured
from automtl.training.crossval import fit_folds
from automtl.training.trainer import EpochResult, FitResult, Trainer


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, and RSS creeps up)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


#: Each completed trial's raw validation outputs, for ensemble selection without re-running models.
VALID_PRED = "valid_pred.npz"


def save_valid_pred(folder: Path, pred: dict[str, "np.ndarray"]) -> None:
    """``trials/<n>/valid_pred.npz``: the kept epoch's raw outputs per task (float32, compressed)."""
    np.savez_compressed(folder / VALID_PRED, **{k: np.asarray(v, np.float32) for k, v in pred.items()})


def device_name() -> str:
    """``cpu`` or ``gpu:<physical id>``: where this process's trials train."""
    return trial_device()


class TrialRunner:
    """Builds, trains and scores one trial; keeps each completed trial's model on disk."""

    def __init__(self, prepared: Prepared, run_dir: Path, on_epoch: Callable[[int, EpochResult], None] | None = None,
                 deadline: float | None = None) -> None:
        self.prepared = prepared
        self.run_dir = run_dir
        self.settings = prepared.experiment.search
        self.on_epoch = on_epoch
        #: the search's end (``time.time()`` seconds): the running trial stops at its next epoch after it
        self.deadline = deadline
        self.plan = configure(self.settings.device, self.settings.precision)
        if prepared.folds:  # one model per fold traces its own epoch function: expected, not a leak
            tf.get_logger().setLevel("ERROR")
        # Everything alive now (TensorFlow, the data) lives for the whole search:
        # freezing it keeps the per-trial garbage collection from rescanning it.
        gc.collect()
        gc.freeze()

    def __call__(self, handle: TrialHandle) -> TrialOutcome:
        keras.backend.clear_session(free_memory=True)  # no state leaks from one trial to the next
        release_free_memory()
        set_precision(self.plan.precision)  # clear_session resets Keras' dtype policy
        keras.utils.set_random_seed(self.settings.seed + handle.number)
        params = TrialParams(handle.params)
        p = self.prepared
        started = time.perf_counter()
        seed = self.settings.seed + handle.number
        # One model per fold (cross-validation), else one model on the training split.
        parts = [(f.encoders, f.tasks, f.train, f.valid) for f in p.folds] or [(p.encoders, p.tasks, p.train, p.valid)]
        fidelity = getattr(handle, "fidelity", None)  # a multi-fidelity rung: a fraction of the training rows
        if fidelity is not None and fidelity < 1.0 and not p.folds:
            tf.get_logger().setLevel("ERROR")  # rungs of other sizes retrace the epoch function: expected
            parts = [(p.encoders, p.tasks, p.train.take(subsample(len(p.train), fidelity, self.settings.seed)),
                      p.valid)]
        try:
            models, trainers = [], []
            for encoders, tasks, train, valid in parts:
                assembled = build_model(encoders, tasks, params)
                models.append(assembled)
                trainers.append(Trainer(assembled, tasks, params, train, valid, p.importance, seed=seed,
                                        encoders=encoders))
        except (ValueError, TypeError) as exc:
            raise TrialFailed(f"cannot build this parameter combination: {exc}") from None
        assembled, trainer = models[0], trainers[0]
        # Optional warm start and budget (Keras Tuner's Hyperband continues a trial from its checkpoint).
        initial = getattr(handle, "initial_weights", None)
        if initial is not None:
            assembled.model.load_weights(initial)
        epochs = getattr(handle, "epochs", None) or self.settings.epochs
        deadline = getattr(handle, "deadline", None) or self.deadline
        rows = sum(len(part[2]) for part in parts)  # every fold's training rows: a cross-validated epoch trains each
        weights = int(assembled.model.count_params())
        check_predicted_cost(getattr(handle, "cost_model", None), rows, weights, epochs, deadline)
        seconds = getattr(handle, "seconds", None)  # its share of a time budget, which plans its epochs
        trained = {"epochs": 0}
        fit_started = time.perf_counter()

        def report(result: EpochResult) -> None:
            trained["epochs"] = result.epoch
            if self.on_epoch is not None:
                self.on_epoch(handle.number, result)
            handle.report(result.epoch, result.objective)

        try:
            fit: FitResult
            if p.folds:
                fit = fit_folds(trainers, p.importance, epochs, self.settings.patience, report, deadline, seconds)
            else:
                fit = trainer.fit(epochs, self.settings.patience, report, deadline, seconds)
        except TrialPruned as exc:  # what the pruned trial cost still teaches the time budget
            raise TrialPruned(str(exc), measured(time.perf_counter() - fit_started, trained["epochs"], rows,
                                                 weights)) from None
        except tf.errors.ResourceExhaustedError as exc:
            raise TrialFailed(f"out of memory: {exc.message.splitlines()[0]}") from None
        except tf.errors.InvalidArgumentError as exc:
            raise TrialFailed(f"TensorFlow rejected this trial: {exc.message.splitlines()[0]}") from None
        folder = trial_dir(self.run_dir, handle.number)
        folder.mkdir(parents=True, exist_ok=True)
        if not p.folds:  # a cross-validated trial's model is trained on every row when it is exported
            assembled.model.save(folder / "model.keras")
        (folder / "history.json").write_text(json.dumps(fit.history, indent=1))
        save_valid_pred(folder, fit.valid_pred)
        metrics = {f"{t}.{k}": float(v) for t, ms in fit.metrics.items() for k, v in ms.items()}
        scores = dict(fit.scores)
        if self.settings.latency_objective:
            from automtl.training.latency import LATENCY, serving_latency_ms

            metrics["latency_ms"] = serving_latency_ms(assembled.model, parts[0][3].x)
            scores[LATENCY] = -metrics["latency_ms"]  # like every score: higher is better
        attrs = {"train_seconds": round(time.perf_counter() - started, 3), "precision": self.plan.precision,
                 "cost": {**measured(time.perf_counter() - fit_started, len(fit.history), rows, weights),
                          "planned_epochs": fit.planned or epochs}}
        if p.folds:
            attrs["folds"] = len(p.folds)
        if fit.stopped:
            attrs["stopped"] = fit.stopped
        return TrialOutcome(
            score=float(fit.objective),
            metrics=metrics,
            scores=scores,
            best_epoch=fit.best_epoch,
            epochs=len(fit.history),
            device=device_name(),
            attrs=attrs,
        )


def check_predicted_cost(cost_model: dict | None, rows: int, weights: int, epochs: int,
                         deadline: float | None) -> None:
    """A configuration the time left cannot train is not started (its trial is pruned, saying why).

    ``cost_model``: :meth:`CostModel.to_json` of the search's finished trials, which the search
    hands each trial under a time budget; the trial needs at least :data:`MIN_PLANNED_EPOCHS` epochs.
    """
    if not cost_model or deadline is None:
        return
    least = min(epochs, MIN_PLANNED_EPOCHS)  # a trial under a time budget plans its epochs down to this
    predicted = CostModel.from_json(cost_model).trial_seconds(rows, weights, least)
    left = deadline - time.time()
    if predicted > left:
        raise TrialPruned(f"not started: {least} epoch(s) of its {weights:,} weights on {rows:,} rows would take "
                          f"about {predicted:.0f} s, and {max(0.0, left):.0f} s are left for trials")


def refit(prepared: Prepared, params: dict, epochs: int, seed: int, path: Path, budget: int | None = None) -> Path:
    """Train a trial's parameters on every training row for ``epochs`` epochs and save the model to ``path``.

    What a cross-validated search exports: its folds chose the parameters and
    the epoch count; the model that serves sees all the data. Nothing
    validates it (every row trained it), so its figures are the folds' means.
    ``budget``: the trial's epoch budget, which its learning-rate schedule spans.
    """
    policy = keras.config.dtype_policy()
    keras.backend.clear_session(free_memory=True)
    keras.config.set_dtype_policy(policy)  # clear_session resets it (mixed precision on GPUs)
    keras.utils.set_random_seed(seed)
    trial_params = TrialParams(params)
    assembled = build_model(prepared.encoders, prepared.tasks, trial_params)
    Trainer(assembled, prepared.tasks, trial_params, prepared.train, None, prepared.importance, seed=seed,
            encoders=prepared.encoders).fit_epochs(epochs, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    assembled.model.save(path)
    return path
