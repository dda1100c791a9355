"""One search run: the search phases, search workers, trial processes, failure streaks, progress."""
