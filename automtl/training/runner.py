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

from automtl.trial import TrialHandle, TrialOutcome, trial_dir
from automtl.devices import configure, set_precision, trial_device
from automtl.errors import TrialFailed
from automtl.model.assemble import build_model
from automtl.trial import TrialParams
from automtl.data.prepare import Prepared
from automtl.training.trainer import EpochResult, Trainer


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

    def __init__(self, prepared: Prepared, run_dir: Path, on_epoch: Callable[[int, EpochResult], None] | None = None) -> None:
        self.prepared = prepared
        self.run_dir = run_dir
        self.settings = prepared.experiment.search
        self.on_epoch = on_epoch
        self.plan = configure(self.settings.device, self.settings.precision)
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
        try:
            assembled = build_model(p.encoders, p.tasks, params)
            trainer = Trainer(assembled, p.tasks, params, p.train, p.valid, p.importance,
                              seed=self.settings.seed + handle.number, encoders=p.encoders)
        except (ValueError, TypeError) as exc:
            raise TrialFailed(f"cannot build this parameter combination: {exc}") from None
        # Optional warm start and budget (Keras Tuner's Hyperband continues a trial from its checkpoint).
        initial = getattr(handle, "initial_weights", None)
        if initial is not None:
            assembled.model.load_weights(initial)
        epochs = getattr(handle, "epochs", None) or self.settings.epochs

        def report(result: EpochResult) -> None:
            if self.on_epoch is not None:
                self.on_epoch(handle.number, result)
            handle.report(result.epoch, result.objective)

        try:
            fit = trainer.fit(epochs, self.settings.patience, report)
        except tf.errors.ResourceExhaustedError as exc:
            raise TrialFailed(f"out of memory: {exc.message.splitlines()[0]}") from None
        except tf.errors.InvalidArgumentError as exc:
            raise TrialFailed(f"TensorFlow rejected this trial: {exc.message.splitlines()[0]}") from None
        folder = trial_dir(self.run_dir, handle.number)
        folder.mkdir(parents=True, exist_ok=True)
        assembled.model.save(folder / "model.keras")
        (folder / "history.json").write_text(json.dumps(fit.history, indent=1))
        save_valid_pred(folder, fit.valid_pred)
        metrics = {f"{t}.{k}": float(v) for t, ms in fit.metrics.items() for k, v in ms.items()}
        scores = dict(fit.scores)
        if self.settings.latency_objective:
            from automtl.training.latency import LATENCY, serving_latency_ms

            metrics["latency_ms"] = serving_latency_ms(assembled.model, p.valid.x)
            scores[LATENCY] = -metrics["latency_ms"]  # like every score: higher is better
        return TrialOutcome(
            score=float(fit.objective),
            metrics=metrics,
            scores=scores,
            best_epoch=fit.best_epoch,
            epochs=len(fit.history),
            device=device_name(),
            attrs={"train_seconds": round(time.perf_counter() - started, 3), "precision": self.plan.precision},
        )
