"""Keras Tuner backend: random, Bayesian or Hyperband search, alone or as chief and workers.

Keras Tuner's Oracle proposes the values; trials train through automtl's
trial runner (the same one Optuna trials use) behind :class:`AutomtlHyperModel`,
whose ``fit`` returns the metrics. The objective is automtl's score under
the name ``automtl_score`` (direction ``max``): a name no Keras metric has,
since multi-output models name their metrics differently across Keras versions.

The tuner's project lives in ``<run folder>/keras_tuner/<study>/``, so running
the same command again resumes it. With Keras Tuner's ``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` set, the process whose
id contains ``chief`` holds the oracle (it runs no trial, records every trial
in ``trials.csv`` and exports the best model at the end) and the others are
workers that run trials. All of them must see the same run folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import keras_tuner as kt
from keras_tuner.engine.base_tuner import BaseTuner

from automtl.backends.base import Backend, TimeLeft, countdown
from automtl.backends.keras_tuner import MARKER_FILE  # which algorithm created a project
from automtl.backends.keras_tuner.roles import distributed_role
from automtl.backends.keras_tuner.space import params_of, space_signature, to_hyperparameters
from automtl.config import SearchConfig, check_name
from automtl.core.trial import Objective, TrialOutcome, TrialPruned, TrialRecord, trial_dir
from automtl.errors import ConfigError, TrialFailed
from automtl.space import SearchSpace

#: The objective's name in Keras Tuner; per-task scores are reported as ``automtl_score/<task>``.
OBJECTIVE = "automtl_score"
#: Random trials before the Gaussian process proposes values (Optuna's TPE also starts with 5).
BAYESIAN_INITIAL_POINTS = 5
HYPERBAND_FACTOR = 3
#: Keras Tuner treats seed 0 as "pick one at random"; automtl's default seed 0 maps to this.
SEED_FOR_ZERO = 1_000_003
#: Per trial, in Keras Tuner's trial folder: device, duration and best epoch (the oracle has no place for them).
OUTCOME_FILE = "automtl_outcome.json"
POLL_SECONDS = 0.25

STATES = {"COMPLETED": "complete", "FAILED": "fail", "INVALID": "fail", "RUNNING": "running"}


@dataclass
class KerasTunerTrial:
    """A Keras Tuner trial as the trial runner sees it (a :class:`~automtl.backends.base.TrialHandle`)."""

    number: int
    params: dict[str, Any]
    #: Hyperband: epochs to train in this trial, and the checkpoint it continues from
    epochs: int | None = None
    initial_weights: Path | None = None
    outcome: TrialOutcome | None = field(default=None, repr=False)

    def report(self, epoch: int, value: float) -> None:
        """Nothing to do: Keras Tuner stops no trial mid-way (Hyperband sets each trial's epochs up front)."""


class AutomtlHyperModel(kt.HyperModel):
    """automtl's search space and trial runner as a Keras Tuner ``HyperModel``.

    ``build(hp)`` returns the trial's automtl parameter values rather than a
    Keras model: the trial runner builds the model itself after clearing the
    Keras session, exactly as for Optuna trials. ``fit`` trains and scores
    through the runner and returns the metrics, ``automtl_score`` among them.
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(name="automtl")
        self.space = space
        self.runner: Objective | None = None

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        to_hyperparameters(self.space, hp)

    def build(self, hp: kt.HyperParameters) -> dict[str, Any]:
        to_hyperparameters(self.space, hp)
        return params_of(self.space, hp.values)

    def fit(self, hp: kt.HyperParameters, model: dict[str, Any], *args: Any, handle: KerasTunerTrial, **kwargs: Any) -> dict[str, float]:
        if self.runner is None:
            raise RuntimeError("no trial runner: call KerasTunerBackend.optimize()")
        handle.outcome = self.runner(handle)
        return results_of(handle.outcome)


def results_of(outcome: TrialOutcome) -> dict[str, float]:
    """The metrics Keras Tuner records for a trial: the objective, per-task metrics and scores."""
    out = {OBJECTIVE: float(outcome.score)}
    out.update({k: float(v) for k, v in outcome.metrics.items()})
    out.update({f"{OBJECTIVE}/{task}": float(v) for task, v in outcome.scores.items()})
    return out


class AutomtlTuner(BaseTuner):
    """Runs the oracle's trials through the HyperModel; tells the backend when each has ended."""

    def __init__(self, oracle: kt.Oracle, hypermodel: AutomtlHyperModel, directory: str, project_name: str,
                 trials_dir: Callable[[int], Path]) -> None:
        super().__init__(oracle, hypermodel, directory=directory, project_name=project_name, overwrite=False)
        self.trials_dir = trials_dir
        #: seconds left for starting trials (None: no time budget)
        self.time_left: TimeLeft = countdown(None)
        self.ended: Callable[[Any, KerasTunerTrial | None], None] | None = None
        self._handles: dict[str, KerasTunerTrial] = {}
        self._reasons: dict[str, str] = {}

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        hp = trial.hyperparameters
        handle = KerasTunerTrial(int(trial.trial_id), self.hypermodel.build(hp))
        if "tuner/epochs" in hp.values:  # Hyperband: this trial's budget, maybe continuing an earlier trial
            handle.epochs = int(hp.values["tuner/epochs"]) - int(hp.values.get("tuner/initial_epoch", 0))
        if "tuner/trial_id" in hp.values:
            handle.initial_weights = self.trials_dir(int(hp.values["tuner/trial_id"])) / "model.keras"
        self._handles[trial.trial_id] = handle
        started = time.perf_counter()
        try:
            return self.hypermodel.fit(hp, handle.params, handle=handle)
        except TrialFailed as exc:
            self._reasons[trial.trial_id] = exc.reason
            raise kt.errors.FailedTrialError(exc.reason) from None
        except TrialPruned as exc:  # Keras Tuner has no pruned state: a trial not started under the time budget
            self._reasons[trial.trial_id] = str(exc)
            raise kt.errors.FailedTrialError(str(exc)) from None
        except kt.errors.FatalError:
            raise
        except Exception as exc:  # a bug, not a bad trial: stop the search, as the Optuna backend does
            raise kt.errors.FatalError(f"trial {trial.trial_id} crashed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._write_outcome(trial.trial_id, handle, time.perf_counter() - started)

    def _write_outcome(self, trial_id: str, handle: KerasTunerTrial, seconds: float) -> None:
        out = handle.outcome
        info = {"duration_s": round(seconds, 3), "device": out.device if out else "",
                "best_epoch": out.best_epoch if out else None, "epochs": out.epochs if out else None,
                "stopped": out.attrs.get("stopped", "") if out else "",
                "cost": out.attrs.get("cost", {}) if out else {},
                "initial_weights": str(handle.initial_weights) if handle.initial_weights else None}
        (Path(self.get_trial_dir(trial_id)) / OUTCOME_FILE).write_text(json.dumps(info, indent=1))

    def pre_create_trial(self) -> None:
        left = self.time_left()
        if left is not None and left <= 0:
            stop_new_trials(self.oracle)

    def on_trial_end(self, trial: Any) -> None:
        reason = self._reasons.pop(trial.trial_id, None)
        if reason is not None:
            trial.message = reason  # the runner's reason, not Keras Tuner's traceback text
        super().on_trial_end(trial)
        if self.ended is not None:
            self.ended(trial, self._handles.pop(trial.trial_id, None))


class _WithoutStrayPrint:
    """``sys.stdout`` minus the leftover ``print`` in keras-tuner 1.4.8's ``Parent.to_proto``.

    That print writes a parent value each time a conditional parameter
    crosses gRPC (chief and workers); only writes made from that function are dropped.
    """

    def __init__(self, stream: Any) -> None:
        from keras_tuner.src.engine.conditions import Parent

        self._stream = stream
        self._noisy = Parent.to_proto.__code__

    def write(self, text: str) -> int:
        if sys._getframe(1).f_code is self._noisy:
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _without_stray_print() -> Any:
    saved = sys.stdout
    sys.stdout = _WithoutStrayPrint(saved)
    try:
        yield
    finally:
        sys.stdout = saved


@kt.synchronized
def _trials_of(oracle: kt.Oracle) -> list[Any]:
    return list(oracle.trials.values())


@kt.synchronized
def _ended_ids(oracle: kt.Oracle) -> list[str]:
    return list(oracle.end_order)


@kt.synchronized
def stop_new_trials(oracle: kt.Oracle) -> None:
    """The time is up: the oracle hands out no new trial (running ones finish); workers get STOPPED."""
    oracle.max_trials = max(1, len(oracle.trials))


def make_oracle(settings: SearchConfig) -> kt.Oracle:
    objective = kt.Objective(OBJECTIVE, direction="max")
    # Failed trials are recorded and the search goes on (as with Optuna), however many in a row.
    common: dict[str, Any] = {"seed": settings.seed or SEED_FOR_ZERO, "max_consecutive_failed_trials": None}
    if settings.algorithm == "random":
        oracle: kt.Oracle = kt.oracles.RandomSearchOracle(objective, max_trials=settings.max_trials, **common)
    elif settings.algorithm == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(objective, max_trials=settings.max_trials,
                                                       num_initial_points=BAYESIAN_INITIAL_POINTS, **common)
    else:
        # --epochs is Hyperband's max_epochs; brackets repeat until --trials trials have run.
        oracle = kt.oracles.HyperbandOracle(objective, max_epochs=settings.epochs, factor=HYPERBAND_FACTOR,
                                            hyperband_iterations=None, **common)
        oracle.max_trials = settings.max_trials
    oracle.verbose = 0  # automtl prints its own progress
    return oracle


class KerasTunerBackend(Backend):
    """The engine behind :data:`automtl.backends.keras_tuner.SPEC` (the settings were checked against it)."""

    def __init__(self, settings: SearchConfig, run_dir: Path, space: SearchSpace, study: str,
                 objectives: Sequence[str] = ()) -> None:
        self.role = distributed_role()
        self.is_worker = self.role == "worker"
        self.space = space
        self.settings = settings
        self.run_dir = Path(run_dir).resolve()
        declared = to_hyperparameters(space)  # refuses what Keras Tuner cannot express, before any trial
        try:  # the project folder is named after the study: a name, never a path out of the run folder
            check_name(study, "the study name (--study)")
        except ValueError as exc:
            raise ConfigError(f"{exc} (got {study!r})") from None
        directory = self.run_dir / "keras_tuner"
        self.project_dir = directory / study
        if not self.is_worker:
            self._check_marker()

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # Keras Tuner prints "Reloading Tuner from ..."
                self.tuner = AutomtlTuner(make_oracle(settings), AutomtlHyperModel(space), str(directory), study,
                                          lambda n: trial_dir(self.run_dir, n))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot open the Keras Tuner project {self.project_dir}: {exc}") from None
        if not self.is_worker:
            if space_signature(self.tuner.oracle.get_space()) != space_signature(declared):
                raise ConfigError(
                    f"the Keras Tuner project {self.project_dir} was started with another search space, and Keras "
                    "Tuner cannot change a project's space; use another --study or --out to start afresh"
                )
            (self.project_dir / MARKER_FILE).write_text(json.dumps({"algorithm": settings.algorithm}))
        self._declared = declared
        self._own: dict[int, TrialRecord] = {}

    def _check_marker(self) -> None:
        marker = self.project_dir / MARKER_FILE
        if marker.exists():
            before = json.loads(marker.read_text()).get("algorithm")
            if before != self.settings.algorithm:
                raise ConfigError(
                    f"the Keras Tuner project {self.project_dir} was started with --algorithm {before}; "
                    f"resume it with that algorithm, or use another --study or --out for '{self.settings.algorithm}'"
                )

    # -- running -------------------------------------------------------------------------
    def optimize(self, objective: Objective, n_trials: int, timeout: float | TimeLeft | None,
                 on_trial: Callable[[TrialRecord], None]) -> None:
        self.tuner.hypermodel.runner = objective
        time_left = countdown(timeout)
        if self.role == "worker":
            # The chief's oracle decides how many trials run and when time is up.
            with _without_stray_print():
                chief = self.tuner.oracle.get_space()
            if space_signature(chief) != space_signature(self._declared):
                raise ConfigError("this worker's search space differs from the chief's; "
                                  "start every process with the same experiment and space files")
            self.tuner.ended = lambda trial, handle: on_trial(self._own_record(trial, handle))
            with _without_stray_print():
                self.tuner.search()
            return
        oracle = self.tuner.oracle
        oracle.max_trials = n_trials
        if self.role == "chief":
            with _without_stray_print():
                self._serve(time_left, on_trial)
            return
        self.tuner.time_left = time_left
        self.tuner.ended = lambda trial, handle: on_trial(self._record(oracle.get_trial(trial.trial_id)))
        self.tuner.search()

    def _serve(self, time_left: TimeLeft, on_trial: Callable[[TrialRecord], None]) -> None:
        """Keras Tuner's chief: serve the oracle to the workers until every trial has ended.

        Keras Tuner's own ``start_server`` polls every 20 seconds once the
        search is over; this loop polls faster and reports each ended trial.
        """
        import grpc
        from keras_tuner.src import protos
        from keras_tuner.src.distribute import oracle_chief

        oracle = self.tuner.oracle
        self.tuner.save()
        address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        servicer = oracle_chief.OracleServicer(oracle)
        protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise ConfigError(f"the chief cannot listen on {address} (KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT); "
                              "is the port in use?")
        reported = set(_ended_ids(oracle))

        def report_ended() -> None:
            for trial_id in _ended_ids(oracle):
                if trial_id not in reported:
                    reported.add(trial_id)
                    on_trial(self._record(oracle.get_trial(trial_id)))

        server.start()
        try:
            while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
                time.sleep(POLL_SECONDS)
                report_ended()
                left = time_left()
                if left is not None and left <= 0:
                    stop_new_trials(oracle)
            report_ended()
        finally:
            server.stop(grace=2).wait()
            self.tuner.save()

    # -- records -------------------------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        if self.is_worker:  # a worker knows the trials it ran; the chief knows them all
            return [self._own[n] for n in sorted(self._own)]
        return sorted((self._record(t) for t in _trials_of(self.tuner.oracle)), key=lambda r: r.number)

    def _params(self, values: dict[str, Any]) -> dict[str, Any]:
        try:
            return params_of(self.space, values)
        except KeyError:  # values from before a space change: keep them as they are
            return {k: v for k, v in values.items() if not k.startswith("tuner/")}

    def _record(self, trial: Any) -> TrialRecord:
        """A trial as the oracle holds it, plus what the process that ran it wrote next to it."""
        info_path = self.project_dir / f"trial_{trial.trial_id}" / OUTCOME_FILE
        try:
            info = json.loads(info_path.read_text()) if info_path.exists() else {}
        except ValueError:  # being written right now by a worker
            info = {}
        state = STATES.get(trial.status, str(trial.status).lower())
        metrics, scores = {}, {}
        for name in trial.metrics.metrics:
            value = trial.metrics.get_last_value(name)
            value = float("nan") if value is None else float(value)
            if name.startswith(OBJECTIVE + "/"):
                scores[name.split("/", 1)[1]] = value
            elif name != OBJECTIVE:
                metrics[name] = value
        score = trial.score if state == "complete" and trial.score is not None else None
        return TrialRecord(
            number=int(trial.trial_id),
            state=state,
            score=None if score is None or not math.isfinite(score) else float(score),
            params=self._params(dict(trial.hyperparameters.values)),
            metrics=metrics,
            duration_s=info.get("duration_s"),
            device=info.get("device") or "",
            reason=(trial.message or "") if state == "fail" else info.get("stopped", "") if state == "complete" else "",
            best_epoch=info.get("best_epoch") if state == "complete" else None,
            scores=scores,
            cost=info.get("cost") or {},
        )

    def _own_record(self, trial: Any, handle: KerasTunerTrial | None) -> TrialRecord:
        """A worker's record of a trial it ran (the oracle, and so the score, lives with the chief)."""
        out = handle.outcome if handle is not None else None
        complete = trial.status == "COMPLETED" and out is not None
        info_path = Path(self.tuner.get_trial_dir(trial.trial_id)) / OUTCOME_FILE
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        record = TrialRecord(
            number=int(trial.trial_id),
            state="complete" if complete else STATES.get(trial.status, str(trial.status).lower()),
            score=out.score if complete else None,
            params=handle.params if handle is not None else self._params(dict(trial.hyperparameters.values)),
            metrics=out.metrics if complete else {},
            duration_s=info.get("duration_s"),
            device=out.device if out is not None else "",
            reason=out.attrs.get("stopped", "") if complete else (trial.message or ""),
            best_epoch=out.best_epoch if complete else None,
            scores=out.scores if complete else {},
            cost=out.attrs.get("cost", {}) if out is not None else {},
        )
        self._own[record.number] = record
        return record
