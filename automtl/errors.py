"""Error types: user mistakes (exit 2, no traceback) versus failed trials."""

from __future__ import annotations

import difflib
from typing import Sequence


class AutomtlError(Exception):
    """Bad user input: the CLI prints the message and exits with code 2."""


class ConfigError(AutomtlError):
    """An experiment file, option or search space is invalid."""


class DataError(AutomtlError):
    """A data file is missing, unreadable or does not fit the experiment."""


class MissingColumns(DataError):
    """Columns a data file lacks, every one at once, each with who needs it and the closest names present.

    Why all at once: a user fixing five misspelt columns should not need five reruns.
    """

    def __init__(self, source: str, missing: Sequence[tuple[str, str]], present: Sequence[str]) -> None:
        self.source = str(source)
        self.missing = list(dict.fromkeys((str(n), str(w)) for n, w in missing))
        self.present = [str(p) for p in present]
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        for name, needed_by in self.missing:
            close = difflib.get_close_matches(name, self.present, n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            parts.append(f"'{name}' (needed by {needed_by}{hint})")
        known = ", ".join(self.present[:20]) + (" ..." if len(self.present) > 20 else "")
        what = "no column" if len(parts) == 1 else f"{len(parts)} columns missing:"
        return f"{self.source}: {what} {', '.join(parts)}; columns are: {known or '(none)'}"

    @classmethod
    def merged(cls, errors: Sequence["MissingColumns"]) -> "MissingColumns":
        """One error for several of the same file (the first file's, when they differ)."""
        same = [e for e in errors if e.source == errors[0].source]
        return cls(errors[0].source, [m for e in same for m in e.missing], errors[0].present)


class TrialFailed(Exception):
    """One trial failed (NaN loss, impossible parameters); the search goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SearchStopped(Exception):
    """The search cannot usefully go on (e.g. ten trials failed in a row); finished trials are kept."""
