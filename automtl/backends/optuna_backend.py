"""Optuna backend: TPE, random or NSGA-II sampling, median pruning, resumable RDB storage.

With ``objective: pareto`` the study has one maximised objective per task
(multi-objective TPE or NSGA-II) and its Pareto front marks the records.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

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
    def __init__(self, trial: optuna.Trial, params: dict[str, Any], prune: bool = True) -> None:
        self.trial = trial
        self.number = trial.number
        self.params = params
        self.prune = prune  # Optuna cannot prune multi-objective trials

    def report(self, epoch: int, value: float) -> None:
        if self.prune and math.isfinite(value):
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                raise TrialPruned(f"pruned at epoch {epoch}")


class OptunaBackend(Backend):
    name = "optuna"
    algorithms = ("tpe", "random", "nsga2")
    multi_objective = True

    def __init__(self, settings: SearchConfig, run_dir: Path, space: SearchSpace, study: str,
                 objectives: Sequence[str] = ()) -> None:
        if settings.algorithm not in self.algorithms:
            raise ConfigError(
                f"backend 'optuna' has no algorithm '{settings.algorithm}'; choose one of: {', '.join(self.algorithms)}"
            )
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.space = space
        self.storage_url = settings.storage or default_storage(run_dir)
        #: task names, one objective each, in a Pareto search; empty for the single mean score
        self.objectives = list(objectives) if settings.objective == "pareto" else []
        if settings.objective == "pareto" and len(self.objectives) < 2:
            raise ConfigError("objective 'pareto' needs at least two tasks (one objective per task)")
        if settings.algorithm == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=5)
        elif settings.algorithm == "nsga2":
            # A generation of a few dozen trials suits searches of tens of trials.
            population = max(4, min(50, settings.trials // 3))
            sampler = optuna.samplers.NSGAIISampler(seed=settings.seed, population_size=population)
        else:
            sampler = optuna.samplers.RandomSampler(seed=settings.seed)
        pruner: optuna.pruners.BasePruner = (
            optuna.pruners.NopPruner() if self.objectives
            else optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=5)
        )
        directions = ["maximize"] * max(1, len(self.objectives))
        try:
            self.study = optuna.create_study(
                study_name=study, storage=self.storage_url, sampler=sampler, pruner=pruner,
                directions=directions, load_if_exists=True,
            )
        except (ValueError, ImportError, optuna.exceptions.StorageInternalError) as exc:
            raise ConfigError(f"cannot open study storage {redact(self.storage_url)}: {exc}") from None
        except Exception as exc:  # sqlalchemy OperationalError and friends
            raise ConfigError(f"cannot open study storage {redact(self.storage_url)}: {type(exc).__name__}: {exc}") from None
        if len(self.study.directions) != len(directions):
            kinds = {1: "single-objective (mean)"}
            raise ConfigError(
                f"study '{study}' in {redact(self.storage_url)} is {kinds.get(len(self.study.directions), 'multi-objective (pareto)')}; "
                f"it cannot be resumed with objective '{settings.objective}' (use another --study or --out)"
            )
        names = self.objectives or ["score"]
        if self.study.metric_names != names:
            with warnings.catch_warnings():  # set_metric_names is marked experimental
                warnings.simplefilter("ignore")
                self.study.set_metric_names(names)

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def optimize(self, objective: Objective, n_trials: int, timeout: float | None,
                 on_trial: Callable[[TrialRecord], None]) -> None:
        remaining = n_trials - self.finished()
        if remaining <= 0:
            return

        def run(trial: optuna.Trial) -> float | list[float]:
            params = self.space.sample_with(lambda p: suggest(trial, p))
            trial.set_user_attr("params", params)
            try:
                outcome: TrialOutcome = objective(_Handle(trial, params, prune=not self.objectives))
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
            if self.objectives:
                trial.set_user_attr("score", outcome.score)  # the mean, for leaderboards and `best`
                return [outcome.scores.get(task, float("nan")) for task in self.objectives]
            return outcome.score

        def callback(study: optuna.Study, frozen: FrozenTrial) -> None:
            on_trial(to_record(frozen, self._front()))

        self.study.optimize(run, n_trials=remaining, timeout=timeout, catch=(TrialFailed,),
                            callbacks=[callback], gc_after_trial=True)

    def _front(self) -> set[int] | None:
        """Numbers of the Pareto-front trials; None for a single-objective study."""
        if len(self.study.directions) < 2:
            return None
        return {t.number for t in self.study.best_trials}

    def records(self) -> list[TrialRecord]:
        front = self._front()
        return [to_record(t, front) for t in self.study.get_trials(deepcopy=False)]


def default_storage(run_dir: Path) -> str:
    """The SQLite study file a run uses unless ``search.storage`` names another."""
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def to_record(t: FrozenTrial, front: set[int] | None = None) -> TrialRecord:
    """A plain record; ``front`` holds the Pareto-front numbers of a multi-objective study."""
    attrs = t.user_attrs
    duration = t.duration.total_seconds() if t.duration is not None else None
    reason = attrs.get("reason", "")
    if t.state == TrialState.FAIL and not reason:
        reason = str(t.system_attrs.get("fail_reason", "failed"))
    complete = t.state == TrialState.COMPLETE
    if front is None:
        score = t.value if complete else None
    else:
        score = attrs.get("score") if complete else None
    return TrialRecord(
        number=t.number,
        state=t.state.name.lower(),
        score=score,
        params=attrs.get("params", dict(t.params)),
        metrics=attrs.get("metrics", {}),
        duration_s=duration,
        device=attrs.get("device", ""),
        reason=reason,
        best_epoch=attrs.get("best_epoch"),
        scores=attrs.get("scores", {}),
        pareto=None if front is None else t.number in front,
    )


def redact(url: str) -> str:
    """A storage URL with any password replaced, safe to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


logging.getLogger("optuna").propagate = False
