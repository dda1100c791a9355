"""Stopping a search that only fails: ten failed trials in a row end it with a clear message."""

from __future__ import annotations

from automtl.core.trial import TrialRecord
from automtl.errors import SearchStopped

#: Failed trials in a row (as this process sees them end) that stop the search.
MAX_FAILURES_IN_A_ROW = 10


class FailureStreak:
    """Counts consecutive failed trials; a completed or pruned trial resets the count."""

    def __init__(self, limit: int = MAX_FAILURES_IN_A_ROW) -> None:
        self.limit = limit
        self.count = 0
        self.reasons: list[str] = []

    def add(self, record: TrialRecord) -> None:
        """Raise :class:`SearchStopped` when ``record`` is the limit-th failure in a row."""
        if record.state != "fail":
            self.count, self.reasons = 0, []
            return
        self.count += 1
        self.reasons.append(record.reason or "failed")
        if self.count >= self.limit:
            raise SearchStopped(
                f"{self.count} trials failed in a row, so the search stopped (finished trials are kept). "
                f"The last one: {self.reasons[-1]}. See the reason column of trials.csv."
            )
