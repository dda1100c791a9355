"""The Optuna backend: TPE, random or NSGA-II sampling over shared, resumable study storage."""
