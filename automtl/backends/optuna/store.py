"""Where an Optuna run's study lives, for what reads its run folder (the :class:`StudyStore` hook).

Light to import: storage URLs are parsed here without Optuna; Optuna loads
only when the report opens the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automtl.backends.base import StudyStore
from automtl.backends.optuna.location import default_storage, in_run_folder, is_journal, redact, without_password


class OptunaStore(StudyStore):
    """A study in the run folder's ``study.db``/``study.journal``, or in the ``--storage`` the search named."""

    def default(self, run_dir: Path) -> str | None:
        return default_storage(Path(run_dir))

    def key(self, storage: str, run_dir: Path) -> str | None:
        if in_run_folder(storage, run_dir):
            return None
        if is_journal(storage):
            return str(Path(storage).expanduser().resolve())
        return without_password(storage)

    def for_disk(self, storage: str) -> str:
        return without_password(storage)

    def redact(self, storage: str) -> str:
        return redact(storage)

    def open_study(self, storage: str, name: str) -> Any:
        import optuna

        from automtl.backends.optuna.storage import open_storage

        return optuna.load_study(study_name=name, storage=open_storage(storage))


STORE = OptunaStore()
