"""The ensemble a run selected, as its run folder records it (``trials.json``, ``ensemble/automtl.json``).

Plain data, apart from the selection (:mod:`automtl.run.ensemble`) so that what
reads a run folder or exports the ensemble needs nothing that trains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from automtl.core.trial import TrialRecord


@dataclass
class EnsembleResult:
    """The selected ensemble: per task, its members and weights; and its validation figures.

    The objective is a weighted mean of per-task scores and each task's output is
    combined on its own, so each task gets its own greedy selection: the trials
    best for one task need not be best for another, and the ensemble's objective is
    then the highest that weighted member averages reach. One SavedModel serves the
    union of the members.
    """

    size: int
    #: the union of the members: trial, mean weight over the tasks, its own score
    members: list[dict[str, Any]]
    #: per task, its members: trial, count (times picked; absent when bagged), weight
    tasks: dict[str, list[dict[str, Any]]]
    score: float
    scores: dict[str, float]
    metrics: dict[str, float]
    best_single: dict[str, Any]
    #: per task, its score after each greedy round (round 1: the trial best for that task)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    #: tasks whose type cannot combine: served by the one trial best for them (task -> trial number)
    solo: dict[str, int] = field(default_factory=dict)
    library: int = 0
    #: bags of bagged selection (0: one greedy pass)
    bags: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def gain(self) -> float:
        return self.score - float(self.best_single["score"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "EnsembleResult":
        fields = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in fields})

    @classmethod
    def of_trial(cls, record: TrialRecord, tasks: Sequence[str]) -> "EnsembleResult":
        """One trial as a one-member ensemble (a teacher that is the best trial)."""
        return cls(1, [{"trial": record.number, "weight": 1.0, "score": record.score}],
                   {t: [{"trial": record.number, "count": 1, "weight": 1.0}] for t in tasks}, float(record.score),
                   dict(record.scores), dict(record.metrics), {"trial": record.number, "score": record.score})

    def describe(self) -> str:
        def part(ms: list[dict[str, Any]]) -> str:
            def one(m: dict[str, Any]) -> str:
                if "count" not in m and len(ms) > 1:
                    return f"#{m['trial']} {m['weight']:.0%}"
                return f"#{m['trial']}" + (f" x{m['count']}" if m.get("count", 1) > 1 else "")

            return ", ".join(one(m) for m in ms)

        per_task = "; ".join(f"{t}: {part(ms)}" for t, ms in self.tasks.items())
        return f"{len(self.members)} model(s) ({per_task})"
