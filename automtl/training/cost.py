"""What a trial costs, measured and predicted: a time budget plans its trials from it.

Each trial records its cost (:func:`measured`): seconds of training, seconds
per epoch, epochs trained, training rows and model weights. :func:`fit`
turns the finished trials' costs into a :class:`CostModel`, a power law
``seconds per epoch = rows x exp(a) x weights^b`` fitted in log space
(FLAML's cost-frugal search orders its candidates by such a cost; here it
only decides what no longer fits the time left). The trial runner asks it
once the model is built and before the first epoch: a configuration whose
predicted training time exceeds the time left is not started.

Plain Python: the search process fits the model, the trial process reads it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: Finished trials of distinct sizes needed before the exponent is fitted; below it, :data:`DEFAULT_EXPONENT`.
MIN_FIT_POINTS = 3
#: How epoch time grows with weights before enough trials say: sub-linear (per-step overhead
#: dominates small models on a CPU), so a prediction errs towards starting a trial.
DEFAULT_EXPONENT = 0.5
EXPONENT_RANGE = (0.2, 1.5)


def measured(train_seconds: float, epochs: int, rows: int, weights: int) -> dict[str, float]:
    """A trial's ``cost`` record (see :attr:`automtl.core.trial.TrialRecord.cost`)."""
    return {"train_seconds": round(train_seconds, 3), "epoch_seconds": round(train_seconds / max(1, epochs), 4),
            "epochs": int(epochs), "rows": int(rows), "weights": int(weights)}


@dataclass(frozen=True)
class CostModel:
    """``seconds per epoch = rows x exp(log_rate) x weights^exponent``; ``epochs``: what a trial
    typically trains (early stopping ends most trials before the epoch limit)."""

    log_rate: float
    exponent: float
    epochs: int

    def epoch_seconds(self, rows: int, weights: int) -> float:
        return rows * math.exp(self.log_rate) * max(1, weights) ** self.exponent

    def trial_seconds(self, rows: int, weights: int, epochs: int | None = None) -> float:
        """Predicted training time for ``epochs`` (default: the typical count)."""
        n = self.epochs if epochs is None else epochs
        return self.epoch_seconds(rows, weights) * n

    def to_json(self) -> dict[str, Any]:
        return {"log_rate": self.log_rate, "exponent": self.exponent, "epochs": self.epochs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CostModel":
        return cls(float(data["log_rate"]), float(data["exponent"]), int(data["epochs"]))


def fit(costs: Iterable[Mapping[str, float]], max_epochs: int, complete_epochs: Iterable[int] = ()) -> CostModel | None:
    """The cost model of these trials' costs; None before any trial trained.

    ``complete_epochs``: the epochs trained by trials that completed (not
    pruned), whose median is the typical trial's length; ``max_epochs`` when
    none completed yet.
    """
    points = [(math.log(max(1, c["weights"])), math.log(c["epoch_seconds"] / max(1, c["rows"])))
              for c in costs if c.get("epoch_seconds", 0) > 0 and c.get("rows", 0) > 0 and "weights" in c]
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    exponent = DEFAULT_EXPONENT
    if len(set(xs)) >= MIN_FIT_POINTS:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        exponent = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        exponent = min(max(exponent, EXPONENT_RANGE[0]), EXPONENT_RANGE[1])
    # the rate that makes the median trial right (robust to one slow outlier)
    log_rate = statistics.median(y - exponent * x for x, y in points)
    done = [int(e) for e in complete_epochs if e]
    epochs = min(max_epochs, int(math.ceil(statistics.median(done)))) if done else max_epochs
    return CostModel(log_rate, exponent, max(1, epochs))


#: A trial planned down to fit its share of a time budget still trains at least this many epochs.
MIN_PLANNED_EPOCHS = 3


class EpochPlan:
    """How many epochs a trial trains: ``epochs``, or fewer when its share of a time budget
    (``seconds``) would not hold them, re-planned from each epoch's measured time.

    The learning-rate schedule spans the planned count, so a trial planned down still anneals
    (a schedule cut off at the deadline would not). The first epoch, which traces the graph,
    counts only until a second one is measured, and the plan made from it alone may grow once
    the second is (the schedule has barely moved by then); after that it only shrinks, so the
    learning rate never rises again late in training.
    """

    def __init__(self, epochs: int, seconds: float | None = None) -> None:
        self.limit = int(epochs)
        self.planned = int(epochs)
        self.seconds = seconds
        self.took: list[float] = []

    def done(self, seconds: float) -> None:
        """One epoch trained in ``seconds``: plan the rest."""
        self.took.append(seconds)
        if self.seconds is None:
            return
        per_epoch = statistics.fmean(self.took[1:] or self.took)
        fits = len(self.took) + int(max(0.0, self.seconds - sum(self.took)) // max(per_epoch, 1e-9))
        floor = min(self.limit, max(MIN_PLANNED_EPOCHS, len(self.took)))
        ceiling = self.limit if len(self.took) <= 2 else self.planned
        self.planned = max(floor, min(ceiling, fits))

    @property
    def note(self) -> str:
        """Why the trial trains fewer epochs than the limit ("" when it does not)."""
        if self.planned >= self.limit or self.seconds is None:
            return ""
        return (f"{self.planned} of {self.limit} epochs planned to fit its share of the time budget "
                f"({self.seconds:.0f} s)")
