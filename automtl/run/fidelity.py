"""Multi-fidelity by rows: many cheap trials on a fraction of the training rows, the best promoted to more.

Asynchronous successive halving (ASHA, Li et al. 2020) with the training rows as
the resource: a new configuration trains on the smallest rung's rows (1/9 of
them); whenever the top third of the finished trials of a rung holds one not yet
promoted, that configuration runs again on the next rung's rows (1/3, then all).
Validation rows never change, so scores of one rung compare. Only trials of the
highest fidelity reached rank for ``best/`` and ensembles (:func:`top_fidelity`).

Why rows rather than epochs alone: a time budget's first trials on 20k images
or 10k texts cost minutes each; on a ninth of the rows, the search sees nine
configurations for the price of one and spends full-data training only on the
ones that proved themselves.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

from automtl.core.trial import TrialRecord, same_fidelity as same, top_fidelity
from automtl.errors import ConfigError

#: the promotion ratio: the top 1/ETA of a rung moves up, each rung has ETA times the rows of the one below
ETA = 3
#: rungs as fractions of the training rows, smallest first
RUNGS = (1 / 9, 1 / 3, 1.0)
#: ``search.fidelity: auto`` uses rows as a fidelity only where the smallest rung keeps this many training rows
AUTO_MIN_ROWS = 1000


def rungs_for(setting: str, rows: int, time_budget: bool, why_not: str = "", subsample_ranks: bool = True
              ) -> list[float]:
    """The row fractions trials train on, smallest first (``[1.0]``: every trial sees every row).

    ``setting``: ``search.fidelity`` (auto, rows or none); ``rows``: the training rows;
    ``why_not``: :func:`automtl.config.fidelity_obstacle`'s reason, which ``rows`` refuses with and ``auto`` obeys;
    ``subsample_ranks``: every input says a subsample ranks its configurations
    (:attr:`automtl.api.InputEncoder.subsample_ranks`). ``auto`` turns it on only
    under a time budget, for such inputs, with enough rows that the smallest rung
    still learns something.
    """
    if setting == "none":
        return [1.0]
    if setting == "auto":
        if not time_budget or why_not or not subsample_ranks or rows * RUNGS[0] < AUTO_MIN_ROWS:
            return [1.0]
        return list(RUNGS)
    if why_not:
        raise ConfigError(f"search.fidelity 'rows': {why_not}; use search.fidelity none (or auto)")
    return list(RUNGS)


def describe(rungs: list[float], rows: int) -> str:
    """The start-up line's words for the rungs ("" without multi-fidelity)."""
    if len(rungs) < 2:
        return ""
    sizes = ", ".join(f"{label(f)} ({max(1, round(rows * f)):,} rows)" for f in rungs)
    return f"multi-fidelity by rows: {sizes}, the best third of each rung moves up"


def label(fraction: float) -> str:
    """``1/9`` for a ninth of the rows, ``all`` for all of them."""
    if fraction >= 1.0:
        return "all"
    return str(Fraction(fraction).limit_denominator(100))


def promotions(records: Sequence[TrialRecord], rungs: Sequence[float]) -> list[tuple[TrialRecord, float]]:
    """The finished configurations to run again on more rows, and each one's new fidelity (ASHA's rule).

    A configuration is promoted once: a record whose ``parent`` names it (queued,
    running or finished) marks it as taken.
    """
    taken = {r.parent for r in records if r.parent is not None}
    out: list[tuple[TrialRecord, float]] = []
    for k in range(len(rungs) - 2, -1, -1):  # the highest rung first: the most promising configurations
        # a pruned trial reached the rung and ranks below every completed one: it counts in the
        # rung's size (ASHA's top 1/ETA of the trials that reached it), and is never promoted
        reached = sum(same(r.fidelity, rungs[k]) and r.state in ("complete", "pruned") for r in records)
        done = sorted((r for r in records if r.ok and same(r.fidelity, rungs[k])), key=lambda r: r.score,
                      reverse=True)
        for r in done[: reached // ETA]:
            if r.number not in taken:
                out.append((r, rungs[k + 1]))
                taken.add(r.number)
    return out


#: the last call comes while the time left for trials is at most this many times the full-rows estimate
LAST_CALL = 2.0


def last_call(records: Sequence[TrialRecord], rungs: Sequence[float], seconds_left: float | None
              ) -> tuple[TrialRecord, float] | None:
    """Before a time budget runs out, the best configuration so far runs on all rows, once.

    Successive halving needs 9 cheap trials and 3 middle ones before one sees
    every row; a short budget may end before that. When no trial on all rows
    has run, is running or is queued, and the time left is between once and
    :data:`LAST_CALL` times what the best configuration of the highest rung
    would take on all rows (its measured time scaled by rows), it is promoted
    straight to all rows; never twice, even if that trial could not run.
    """
    if seconds_left is None or len(rungs) < 2:
        return None
    if any(same(r.fidelity, rungs[-1]) and (r.parent is not None or r.state in ("complete", "running", "waiting"))
           for r in records):
        return None  # once: a promotion to all rows was made (whatever became of it), or one is on its way
    top = top_fidelity(records)
    if not top:
        return None
    best = max(top, key=lambda r: r.score)
    if any(r.parent == best.number and r.state in ("running", "waiting") for r in records):
        return None  # its next rung is on its way
    took = float(best.cost.get("train_seconds") or best.duration_s or 0.0) * rungs[-1] / best.fidelity
    if took <= seconds_left <= LAST_CALL * took:  # not yet: the ladder may still get there; too late: it cannot
        return best, rungs[-1]
    return None
