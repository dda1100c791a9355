"""Sharing schemes: how tasks share parameters between the inputs and their heads.

Each scheme maps the shared feature vector to one feature tensor per task.
"""

from __future__ import annotations

from typing import Any

from automtl.api import dense_block
from automtl.params import TrialParams


def hard_sharing(features: Any, tasks: list[str], params: TrialParams) -> dict[str, Any]:
    """One trunk for all tasks (hard parameter sharing)."""
    trunk = dense_block(features, params.trunk_units, params.trunk_depth, params.dropout, params.l2, name="trunk")
    return {t: trunk for t in tasks}


SCHEMES = {"hard": hard_sharing}
