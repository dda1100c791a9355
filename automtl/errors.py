"""Error types: user mistakes (exit 2, no traceback) versus failed trials."""

from __future__ import annotations


class AutomtlError(Exception):
    """Bad user input: the CLI prints the message and exits with code 2."""


class ConfigError(AutomtlError):
    """An experiment file, option or search space is invalid."""


class DataError(AutomtlError):
    """A data file is missing, unreadable or does not fit the experiment."""


class TrialFailed(Exception):
    """One trial failed (NaN loss, impossible parameters); the search goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SearchStopped(Exception):
    """The search cannot usefully go on (e.g. ten trials failed in a row); finished trials are kept."""
