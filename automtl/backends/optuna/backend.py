"""Optuna backend: TPE, random or NSGA-II sampling, median, Hyperband or ASHA pruning, resumable shared storage.

With ``objective: pareto`` the study has one maximised objective per task
(multi-objective TPE or NSGA-II) and its Pareto front marks the records.

Several processes (``--workers``, or the same command on several machines
with one PostgreSQL ``--storage``) share one study: together they finish
exactly ``--trials`` trials. Each process stops starting trials once the
finished and running trials fill the budget; a trial that a racing process
started past it ends at once as *surplus* and is left out of every table.
A running trial whose process died is failed and retried (heartbeats, see
:mod:`automtl.backends.optuna.storage`); a process that has stopped waits
for the others' running trials, so a retry is never left unrun.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import socket
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from automtl.backends.base import Backend, TimeLeft, countdown
from automtl.core.trial import Objective, TrialOutcome, TrialPruned, TrialRecord
from automtl.backends.optuna.storage import (
    FINISHED, INTERRUPTED_ATTR, OWNER_ATTR, SURPLUS_ATTR, counts, default_storage, ignored, is_journal, open_storage,
    owner_is_dead, owner_tag, redact, retried_numbers, retry_callback,
)
from automtl.backends.optuna.space import suggest
from automtl.config import SearchConfig
from automtl.errors import ConfigError, TrialFailed
from automtl.space import SearchSpace

__all__ = ["FINISHED", "OptunaBackend", "default_storage", "redact", "to_record", "suggest"]

#: Seconds between looks at the other processes' running trials while waiting for them.
WAIT_POLL_SECONDS = 1.0
INTERRUPTED_REASON = "interrupted (Ctrl-C)"


class _Surplus(Exception):
    """A trial started after the study's budget was full (two processes raced for the last slot)."""


#: user attributes of a multi-fidelity trial: the fraction of training rows, and the trial it promotes
FIDELITY_ATTR, PARENT_ATTR = "fidelity", "promoted_from"


class _Handle:
    def __init__(self, trial: optuna.Trial, params: dict[str, Any], prune: bool = True) -> None:
        self.trial = trial
        self.number = trial.number
        self.params = params
        self.fidelity = trial.user_attrs.get(FIDELITY_ATTR)
        # Optuna cannot prune multi-objective trials. A promoted trial earned its rows: it is not
        # pruned, and its curve (on more rows) stays out of the curves the pruner compares.
        self.prune = prune and trial.user_attrs.get(PARENT_ATTR) is None

    def report(self, epoch: int, value: float) -> None:
        if self.prune and math.isfinite(value):
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                raise TrialPruned(f"pruned at epoch {epoch}")


class OptunaBackend(Backend):
    """The engine behind :data:`automtl.backends.optuna.SPEC` (the settings were checked against it)."""

    def __init__(self, settings: SearchConfig, run_dir: Path, space: SearchSpace, study: str,
                 objectives: Sequence[str] = ()) -> None:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.space = space
        self.grace_period = settings.grace_period or 3 * settings.heartbeat_interval
        parallel = isinstance(settings.workers, int) and settings.workers > 1
        self.storage_url = settings.storage or default_storage(run_dir, parallel=parallel)
        #: task names, one objective each, in a Pareto search; empty for the single mean score
        self.objectives = list(objectives) if settings.objective == "pareto" else []
        if settings.objective == "pareto" and len(self.objectives) < 2:
            raise ConfigError("objective 'pareto' needs at least two tasks (one objective per task)")
        seed = sampler_seed(settings.seed, settings.storage is not None, self.storage_url)
        sampler = make_sampler(settings, seed)
        pruner = optuna.pruners.NopPruner() if self.objectives else make_pruner(settings)
        directions = ["maximize"] * max(1, len(self.objectives))
        try:
            storage = open_storage(self.storage_url, settings.heartbeat_interval, settings.grace_period)
            self.study = optuna.create_study(
                study_name=study, storage=storage, sampler=sampler, pruner=pruner,
                directions=directions, load_if_exists=True,
            )
        except ModuleNotFoundError as exc:
            hint = " (pip install 'psycopg[binary]')" if "psycopg" in str(exc) else ""
            raise ConfigError(f"cannot open study storage {redact(self.storage_url)}: {exc}{hint}") from None
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
        existing = len(self.study.get_trials(deepcopy=False))
        if existing:  # resuming: a seed of its own, so the new trials do not replay the first run's draws
            self.study.sampler = make_sampler(settings, seed + existing)
        else:  # a new study runs the space's start points first (what they leave out is sampled)
            for point in space.start:
                self.study.enqueue_trial(point, skip_if_exists=True)
        names = self.objectives or ["score"]
        if self.study.metric_names != names:
            with warnings.catch_warnings():  # set_metric_names is marked experimental
                warnings.simplefilter("ignore")
                self.study.set_metric_names(names)

    # -- the budget shared by every process on the study ---------------------------------------
    def finished(self) -> int:
        """Finished trials that count towards ``--trials``."""
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        return sum(counts(t, retried) for t in trials)

    def _claimed(self, before: int | None = None) -> int:
        """Counting finished trials plus running and queued ones (of numbers below ``before``)."""
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_numbers(trials)
        return sum((counts(t, retried) or self._pending(t)) and (before is None or t.number < before) for t in trials)

    def _pending(self, t: FrozenTrial) -> bool:
        """Queued, or running in a live process (a running trial with no owner is one this
        version did not start, followed only while it is young)."""
        if ignored(t):
            return False
        if t.state == TrialState.WAITING:
            return True
        if t.state != TrialState.RUNNING:
            return False
        if OWNER_ATTR in t.user_attrs:
            return True
        started = t.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - started).total_seconds() < self.grace_period

    def _reap_dead_owners(self) -> None:
        """Fail (and retry) running trials whose process on this host is gone, without waiting for heartbeats."""
        storage = self.study._storage
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            tag = t.user_attrs.get(OWNER_ATTR)
            if not owner_is_dead(tag):
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, "reason", f"its process ({tag}) died; the trial is retried")
                if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        retry_callback()(self.study, storage.get_trial(t._trial_id))
            except optuna.exceptions.UpdateFinishedTrialError:  # another process got there first
                pass

    def _fail_stale(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fail_stale_trials is marked experimental
            optuna.storages.fail_stale_trials(self.study)

    def _wait_for_others(self, n_trials: int, time_left: TimeLeft) -> bool:
        """Wait while other processes' running trials fill the budget; False when time is up.

        A queued trial (the retry of one whose process died, failed here or by
        another waiting process) ends the wait: it counts as claimed, and only a
        process that stops waiting runs it.
        """
        while (self._claimed() >= n_trials and self.finished() < n_trials
               and not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
            left = time_left()
            if left is not None and left <= 0:
                return False
            time.sleep(WAIT_POLL_SECONDS)
            self._reap_dead_owners()
            self._fail_stale()
        return True

    def optimize(self, objective: Objective, n_trials: int, timeout: float | TimeLeft | None,
                 on_trial: Callable[[TrialRecord], None]) -> None:
        time_left = countdown(timeout)

        def run(trial: optuna.Trial) -> float | list[float]:
            trial.set_user_attr(OWNER_ATTR, owner_tag())
            if trial.user_attrs.get("reason"):  # a retry inherits the attributes of the trial it replaces
                trial.set_user_attr("reason", "")
            if self._claimed(before=trial.number) >= n_trials:
                trial.set_user_attr(SURPLUS_ATTR, True)
                self.study.stop()
                raise _Surplus()
            params = self.space.sample_with(lambda p: suggest(trial, p))
            trial.set_user_attr("params", params)
            if self.base_fidelity < 1.0 and FIDELITY_ATTR not in trial.user_attrs:
                trial.set_user_attr(FIDELITY_ATTR, self.base_fidelity)
            try:
                outcome: TrialOutcome = objective(_Handle(trial, params, prune=not self.objectives))
            except TrialPruned as exc:
                trial.set_user_attr("reason", str(exc))
                if exc.cost:
                    trial.set_user_attr("cost", exc.cost)
                raise optuna.TrialPruned(str(exc)) from None
            except TrialFailed as exc:
                trial.set_user_attr("reason", exc.reason)
                raise
            except KeyboardInterrupt:
                # Recorded as failed (Optuna's state for it), marked so it neither counts nor ranks.
                trial.set_user_attr("reason", INTERRUPTED_REASON)
                trial.set_user_attr(INTERRUPTED_ATTR, True)
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
            if not ignored(frozen):
                on_trial(to_record(frozen, self._front()))
            if self._claimed() >= n_trials:
                study.stop()  # the budget is full: started trials (here and elsewhere) finish it
            left = time_left()
            if left is not None and left <= 0:
                study.stop()  # the time for trials is up (a time budget re-sizes it after every trial)

        self._reap_dead_owners()
        while self.finished() < n_trials:
            left = time_left()
            if left is not None and left <= 0:
                return
            if self._claimed() < n_trials or self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                self.study.optimize(run, timeout=left, catch=(TrialFailed, _Surplus), callbacks=[callback],
                                    gc_after_trial=True)
            elif not self._wait_for_others(n_trials, time_left):
                return

    def promote(self, parent: TrialRecord, fidelity: float) -> None:
        """Queue the parent's sampled values (Optuna's own, not the derived ones) on more rows."""
        frozen = self.study.get_trials(deepcopy=False)[parent.number]
        self.study.enqueue_trial(dict(frozen.params), user_attrs={FIDELITY_ATTR: fidelity, PARENT_ATTR: parent.number})

    def _front(self) -> set[int] | None:
        """Numbers of the Pareto-front trials; None for a single-objective study."""
        if len(self.study.directions) < 2:
            return None
        return {t.number for t in self.study.best_trials}

    def records(self) -> list[TrialRecord]:
        front = self._front()
        return [to_record(t, front) for t in self.study.get_trials(deepcopy=False) if not ignored(t)]


def make_sampler(settings: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if settings.algorithm == "tpe":
        # constant liar: processes sharing a study do not all propose next to the same running trials
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, constant_liar=True)
    if settings.algorithm == "nsga2":
        # A generation of a few dozen trials suits searches of tens of trials.
        population = max(4, min(50, settings.max_trials // 3))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    return optuna.samplers.RandomSampler(seed=seed)


#: Completed trials before any pruning: the pruners compare a trial with these, and a handful is no yardstick.
PRUNER_STARTUP_TRIALS = 5


def pruner_startup(settings: SearchConfig) -> int:
    """Completed trials before the pruner judges.

    Under a time budget (``search.timeout``, no trial count) a fixed
    :data:`PRUNER_STARTUP_TRIALS`: the trial count is nominal there, and a
    pruner waiting for a fifth of it never starts. With a trial count, a fifth of
    it when that is more, so TPE also learns from whole trials first (pruned
    ones tell it little): on 50-trial searches this kept the best trial where 5
    had pruned it (``bench/search_efficiency.py``).
    """
    if settings.trials is None:
        return PRUNER_STARTUP_TRIALS
    return max(PRUNER_STARTUP_TRIALS, int(settings.trials) // 5)


HYPERBAND_REDUCTION = 3


class _AfterStartup:
    """Mix-in: silent until ``startup`` trials completed and the warm-up epochs passed.

    The pruner's own ``prune`` still runs (it records the trial's rungs, so
    later trials compete with it); only its verdict waits.
    """

    _warmup: int
    _startup: int

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if trial.last_step is None or trial.last_step < self._warmup:
            return False
        verdict = super().prune(study, trial)  # type: ignore[misc]
        return verdict and len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= self._startup


class _Hyperband(_AfterStartup, optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband pruner behind the start-up rule.

    A subclass (not a wrapper): Optuna's samplers see the Hyperband pruner and
    draw each bracket's trials from that bracket's history.
    """

    def __init__(self, warmup: int, max_epochs: int, startup: int = PRUNER_STARTUP_TRIALS) -> None:
        super().__init__(min_resource=max(1, warmup), max_resource=max(max_epochs, max(1, warmup)),
                         reduction_factor=HYPERBAND_REDUCTION)
        self._warmup = warmup
        self._startup = startup


class _Asha(_AfterStartup, optuna.pruners.SuccessiveHalvingPruner):
    """Asynchronous successive halving (Li et al. 2020): rungs at warm-up x 1, 3, 9, ... epochs; a trial
    goes on past a rung only while it is in the top third of the trials that reached that rung."""

    def __init__(self, warmup: int, startup: int = PRUNER_STARTUP_TRIALS) -> None:
        super().__init__(min_resource=max(1, warmup), reduction_factor=HYPERBAND_REDUCTION,
                         min_early_stopping_rate=0)
        self._warmup = warmup
        self._startup = startup


def make_pruner(settings: SearchConfig) -> optuna.pruners.BasePruner:
    """``search.pruner``: no trial is pruned before ``pruner_warmup`` epochs nor before
    :func:`pruner_startup` trials completed.

    ``median``: a trial stops when its best score so far is below the median
    of the completed trials' scores at the same epoch. ``hyperband``: trials
    fall into brackets of successive halving that start judging at
    ``pruner_warmup`` epochs and keep a third of the trials at each rung
    (warm-up x 3, x 9, ... up to ``epochs``). ``asha``: one bracket of
    asynchronous successive halving with the same rungs.
    """
    warmup = int(settings.pruner_warmup if settings.pruner_warmup is not None else max(1, settings.epochs // 4))
    startup = pruner_startup(settings)
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if settings.pruner == "hyperband":
        return _Hyperband(warmup, settings.epochs, startup)
    if settings.pruner == "asha":
        return _Asha(warmup, startup)
    return optuna.pruners.NopPruner()


def sampler_seed(seed: int, explicit_storage: bool, storage: str = "") -> int:
    """The sampler's seed in this process.

    Processes sharing a study must not draw the same values: a ``--workers``
    worker offsets ``--seed`` by its index (repeatable on a journal file; on a
    database, which other machines may share, also by its host); any other
    process on a storage given with ``--storage`` mixes in its host and
    process id. A lone process on its run folder's study keeps ``--seed``.
    """
    worker = os.environ.get("AUTOMTL_WORKER", "")
    if worker.isdigit():
        host = 0 if is_journal(storage) else zlib.crc32(socket.gethostname().encode())
        return (seed + 1009 * (int(worker) + 1) + host) % 2**31
    if explicit_storage:
        return (seed + zlib.crc32(owner_tag().encode())) % 2**31
    return seed


def to_record(t: FrozenTrial, front: set[int] | None = None) -> TrialRecord:
    """A plain record; ``front`` holds the Pareto-front numbers of a multi-objective study."""
    attrs = t.user_attrs
    duration = t.duration.total_seconds() if t.duration is not None else None
    reason = attrs.get("reason", "") or attrs.get("stopped", "")  # a complete trial the deadline ended early
    if t.state == TrialState.FAIL and not reason:
        if OWNER_ATTR in attrs:  # failed from outside: Optuna's heartbeat check
            reason = "its process stopped sending heartbeats (killed or cut off); the trial is retried"
        else:
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
        cost=attrs.get("cost", {}),
        fidelity=float(attrs.get(FIDELITY_ATTR, 1.0)),
        parent=attrs.get(PARENT_ATTR),
    )


logging.getLogger("optuna").propagate = False
