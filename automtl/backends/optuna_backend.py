"""Optuna backend: TPE or random sampling, median pruning, resumable RDB storage."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from automtl.backends.base import Backend, Objective, TrialOutcome, TrialPruned, TrialRecord
from automtl.config import SearchConfig
from automtl.errors import ConfigError, TrialFailed
from automtl.space import ChoiceParam, FloatParam, IntParam, Param, SearchSpace

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def suggest(trial: optuna.Trial, p: Param) -> Any:
    """The one translation of automtl's parameter kinds into Optuna's ``suggest_*``."""
    if isinstance(p, IntParam):
        return trial.suggest_int(p.name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, FloatParam):
        return trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, ChoiceParam):
        return trial.suggest_categorical(p.name, list(p.values))
    raise TypeError(f"cannot suggest {p!r}")


class _Handle:
    def __init__(self, trial: optuna.Trial, params: dict[str, Any]) -> None:
        self.trial = trial
        self.number = trial.number
        self.params = params

    def report(self, epoch: int, value: float) -> None:
        if math.isfinite(value):
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                raise TrialPruned(f"pruned at epoch {epoch}")


class OptunaBackend(Backend):
    name = "optuna"
    algorithms = ("tpe", "random")

    def __init__(self, settings: SearchConfig, run_dir: Path, space: SearchSpace, study: str) -> None:
        if settings.algorithm not in self.algorithms:
            raise ConfigError(
                f"backend 'optuna' has no algorithm '{settings.algorithm}'; choose one of: {', '.join(self.algorithms)}"
            )
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.space = space
        self.storage_url = settings.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
        if settings.algorithm == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=5)
        else:
            sampler = optuna.samplers.RandomSampler(seed=settings.seed)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=5)
        try:
            self.study = optuna.create_study(
                study_name=study, storage=self.storage_url, sampler=sampler, pruner=pruner,
                direction="maximize", load_if_exists=True,
            )
        except (ValueError, ImportError, optuna.exceptions.StorageInternalError) as exc:
            raise ConfigError(f"cannot open study storage {redact(self.storage_url)}: {exc}") from None
        except Exception as exc:  # sqlalchemy OperationalError and friends
            raise ConfigError(f"cannot open study storage {redact(self.storage_url)}: {type(exc).__name__}: {exc}") from None

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def optimize(self, objective: Objective, n_trials: int, timeout: float | None,
                 on_trial: Callable[[TrialRecord], None]) -> None:
        remaining = n_trials - self.finished()
        if remaining <= 0:
            return

        def run(trial: optuna.Trial) -> float:
            params = self.space.sample_with(lambda p: suggest(trial, p))
            trial.set_user_attr("params", params)
            try:
                outcome: TrialOutcome = objective(_Handle(trial, params))
            except TrialPruned as exc:
                trial.set_user_attr("reason", str(exc))
                raise optuna.TrialPruned(str(exc)) from None
            except TrialFailed as exc:
                trial.set_user_attr("reason", exc.reason)
                raise
            trial.set_user_attr("metrics", outcome.metrics)
            trial.set_user_attr("scores", outcome.scores)
            trial.set_user_attr("device", outcome.device)
            trial.set_user_attr("best_epoch", outcome.best_epoch)
            for key, value in outcome.attrs.items():
                trial.set_user_attr(key, value)
            return outcome.score

        def callback(study: optuna.Study, frozen: FrozenTrial) -> None:
            on_trial(to_record(frozen))

        self.study.optimize(run, n_trials=remaining, timeout=timeout, catch=(TrialFailed,),
                            callbacks=[callback], gc_after_trial=True)

    def records(self) -> list[TrialRecord]:
        return [to_record(t) for t in self.study.get_trials(deepcopy=False)]


def to_record(t: FrozenTrial) -> TrialRecord:
    attrs = t.user_attrs
    duration = t.duration.total_seconds() if t.duration is not None else None
    reason = attrs.get("reason", "")
    if t.state == TrialState.FAIL and not reason:
        reason = str(t.system_attrs.get("fail_reason", "failed"))
    return TrialRecord(
        number=t.number,
        state=t.state.name.lower(),
        score=t.value if t.state == TrialState.COMPLETE else None,
        params=attrs.get("params", dict(t.params)),
        metrics=attrs.get("metrics", {}),
        duration_s=duration,
        device=attrs.get("device", ""),
        reason=reason,
        best_epoch=attrs.get("best_epoch"),
    )


def redact(url: str) -> str:
    """A storage URL with any password replaced, safe to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


logging.getLogger("optuna").propagate = False
