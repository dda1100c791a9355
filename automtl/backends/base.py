"""What every backend offers the search loop (the records it returns live in :mod:`automtl.core.trial`)."""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from automtl.core.trial import Objective, TrialRecord, top_fidelity

if TYPE_CHECKING:
    from automtl.config import SearchConfig
    from automtl.space import SearchSpace


class StudyStore:
    """Where a backend keeps its study, for what reads a run folder without running the engine.

    The run folder's owner record, its snapshot, the report and messages ask
    this rather than a backend's modules (they never import an engine). The
    base is a backend that keeps its study in the run folder's own files and
    takes no storage setting; a backend with a study store overrides it
    (:class:`automtl.backends.optuna.store.OptunaStore`).
    """

    def default(self, run_dir: Path) -> str | None:
        """The storage a run in ``run_dir`` uses when the experiment names none (None: no storage setting)."""
        return None

    def key(self, storage: str, run_dir: Path) -> str | None:
        """What identifies ``storage`` as a run folder's owner (None: the run folder's own store)."""
        return storage

    def for_disk(self, storage: str) -> str:
        """``storage`` as it may be written to a file (no password)."""
        return storage

    def redact(self, storage: str) -> str:
        """``storage`` as it may be printed."""
        return storage

    def open_study(self, storage: str, name: str) -> Any:
        """The stored study, as an Optuna study for the report to draw; None where the backend keeps none."""
        return None

    def rebuild(self, space: "SearchSpace", records: Sequence[TrialRecord], tasks: Sequence[str], pareto: bool,
                epochs: Mapping[int, Mapping[int, float]]) -> Any:
        """An in-memory Optuna study of ``records`` (the report draws with Optuna's visualisation module).

        ``epochs``: per trial, its validation objective per epoch.
        """
        from automtl.backends.optuna.view import rebuild_study

        return rebuild_study(space, records, tasks, pareto, epochs)


@dataclass(frozen=True)
class BackendSpec:
    """What a search backend declares: its algorithms and capabilities, light to import.

    Registered under the ``automtl.backends`` entry-point group (the entry
    point names this object); the engine itself (``engine``: ``module:Class``,
    a :class:`Backend`) is imported only by :meth:`create`.
    """

    name: str
    algorithms: tuple[str, ...]
    default_algorithm: str
    engine: str
    #: ``objective: pareto`` (one objective per task) is supported
    multi_objective: bool = False
    #: how poor trials stop early, in words (for `automtl spaces`/README and messages)
    pruning: str = "none"
    #: the ``search.pruner`` values this backend runs (``none``: it cannot stop a trial mid-way by its epochs)
    pruners: tuple[str, ...] = ("none",)
    #: it can prune trials of a multi-objective (``pareto``) search
    prunes_multi_objective: bool = False
    #: it can queue a finished configuration to run again on more training rows (``search.fidelity: rows``)
    promotes: bool = False
    #: ``--workers N`` processes can share one study store on this machine
    parallel_workers: bool = False
    #: the study lives in an Optuna storage (the report and the dashboard open it)
    optuna_study: bool = False
    #: how several machines share one search, in words
    distributed: str = ""
    #: ``module:function(settings, run_dir, study)``, light to import: refuses settings the engine could
    #: not open (a storage), before TensorFlow loads and before the run folder changes ("": nothing to check)
    check: str = ""
    #: ``module:NAME`` of its :class:`StudyStore`, light to import ("": the base, a study kept in the run folder)
    store: str = ""
    #: ``module:function(settings) -> int``: completed trials before its pruner judges ("": it does not say)
    pruner_startup: str = ""
    #: algorithms whose trials continue from an earlier trial's model (Hyperband's promoted trials): they cannot
    #: cross-validate, since a cross-validated trial keeps no single model (``data.folds`` is refused with them)
    continues_trials: tuple[str, ...] = ()
    #: ``module:function() -> bool``, light to import: this process joins a search already running in the run
    #: folder (a distributed worker), so it does not take the folder's lock ("": every search holds its folder)
    joins: str = ""

    def cross_validates(self, algorithm: str | None) -> bool:
        """Whether trials of ``algorithm`` (None: the default) can train once per fold (see :attr:`continues_trials`)."""
        return (algorithm or self.default_algorithm) not in self.continues_trials

    def study_store(self) -> StudyStore:
        """Where its study lives, for what reads a run folder (see :class:`StudyStore`)."""
        if not self.store:
            return StudyStore()
        module, _, name = self.store.partition(":")
        return getattr(importlib.import_module(module), name)

    def pruner_startup_trials(self, settings: "SearchConfig") -> int | None:
        """Completed trials before the pruner judges, for the search's start line (None: not said)."""
        if not self.pruner_startup:
            return None
        module, _, fn = self.pruner_startup.partition(":")
        return int(getattr(importlib.import_module(module), fn)(settings))

    def joins_running_search(self) -> bool:
        """Whether this process joins a running search in its run folder (see :attr:`joins`)."""
        if not self.joins:
            return False
        module, _, fn = self.joins.partition(":")
        return bool(getattr(importlib.import_module(module), fn)())

    def default_pruner(self, objective: str) -> str:
        """The first pruner it declares, or ``none`` where it cannot prune this objective."""
        if objective == "pareto" and not self.prunes_multi_objective:
            return "none"
        return self.pruners[0]

    def problem(self, algorithm: str, objective: str, pruner: str = "none") -> str | None:
        """Why this backend cannot run ``algorithm`` for ``objective``, or None (never a silent substitute)."""
        if algorithm not in self.algorithms:
            return f"backend '{self.name}' has no algorithm '{algorithm}'; choose one of: {', '.join(self.algorithms)}"
        if objective == "pareto" and not self.multi_objective:
            return (f"objective 'pareto' needs a multi-objective backend; backend '{self.name}' has no true "
                    "multi-objective search")
        if pruner not in self.pruners:
            return (f"backend '{self.name}' has no pruner '{pruner}' (it prunes by: {self.pruning}); "
                    f"search.pruner must be one of: {', '.join(self.pruners)}")
        if pruner != "none" and objective == "pareto" and not self.prunes_multi_objective:
            return (f"backend '{self.name}' cannot prune the trials of a multi-objective (pareto) search; "
                    "use search.pruner: none")
        return None

    def check_settings(self, settings: "SearchConfig", run_dir: Path, study: str) -> None:
        """Run the backend's light check of ``settings`` (see :attr:`check`); raises ConfigError."""
        if self.check:
            module, _, fn = self.check.partition(":")
            getattr(importlib.import_module(module), fn)(settings, run_dir, study)

    def create(self, settings: "SearchConfig", run_dir: Path, space: "SearchSpace", study: str,
               objectives: Sequence[str] = ()) -> "Backend":
        problem = self.problem(str(settings.algorithm), settings.objective, str(settings.pruner or "none"))
        if problem is not None:
            from automtl.errors import ConfigError

            raise ConfigError(problem)
        module, _, cls = self.engine.partition(":")
        return getattr(importlib.import_module(module), cls)(settings, run_dir, space, study, objectives)


#: Seconds left for starting trials (None: no limit); asked before each new trial.
TimeLeft = Callable[[], "float | None"]


def countdown(timeout: "float | TimeLeft | None") -> TimeLeft:
    """``timeout`` as a :data:`TimeLeft`: a number of seconds counts down from now."""
    if callable(timeout):
        return timeout
    if timeout is None:
        return lambda: None
    end = time.monotonic() + timeout
    return lambda: end - time.monotonic()


class Backend(ABC):
    """An engine that proposes values from a :class:`~automtl.space.SearchSpace`."""

    #: a distributed worker runs trials but leaves ``trials.csv`` and the export to the process holding the study
    is_worker: bool = False
    #: the fraction of the training rows a newly sampled configuration trains on (multi-fidelity; 1: all)
    base_fidelity: float = 1.0

    def promote(self, parent: TrialRecord, fidelity: float) -> None:
        """Queue ``parent``'s configuration to run again on ``fidelity`` of the training rows.

        Backends that can run promoted trials declare ``promotes`` in their spec;
        the search never calls this on others.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot run a configuration again on more rows")

    @abstractmethod
    def optimize(
        self,
        objective: Objective,
        n_trials: int,
        timeout: "float | TimeLeft | None",
        on_trial: Callable[[TrialRecord], None],
    ) -> None:
        """Run until the study holds ``n_trials`` finished trials (or time runs out).

        ``timeout``: seconds from now, or a function the backend asks before each new
        trial (a time budget whose share for trials changes as trial costs are measured).
        """

    @abstractmethod
    def records(self) -> list[TrialRecord]:
        """All trials of the study, including those of earlier (resumed) runs."""

    def best(self) -> TrialRecord | None:
        """The best completed trial of the highest fidelity reached (every completed trial without multi-fidelity)."""
        done = top_fidelity(self.records())
        return max(done, key=lambda r: r.score) if done else None
