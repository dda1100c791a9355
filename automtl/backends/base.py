"""What every backend offers the search loop (the records it returns live in :mod:`automtl.trial`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from automtl.trial import Objective, TrialRecord


class Backend(ABC):
    """An engine that proposes values from a :class:`~automtl.space.SearchSpace`."""

    name: str = ""
    algorithms: tuple[str, ...] = ()
    #: whether ``objective: pareto`` (one objective per task) is supported
    multi_objective: bool = False
    #: a distributed worker runs trials but leaves ``trials.csv`` and the export to the process holding the study
    is_worker: bool = False

    @abstractmethod
    def optimize(
        self,
        objective: Objective,
        n_trials: int,
        timeout: float | None,
        on_trial: Callable[[TrialRecord], None],
    ) -> None:
        """Run until the study holds ``n_trials`` finished trials (or time runs out)."""

    @abstractmethod
    def records(self) -> list[TrialRecord]:
        """All trials of the study, including those of earlier (resumed) runs."""

    def best(self) -> TrialRecord | None:
        done = [r for r in self.records() if r.ok]
        return max(done, key=lambda r: r.score) if done else None
