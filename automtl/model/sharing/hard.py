"""Hard parameter sharing: one trunk for every task."""

from __future__ import annotations

from typing import Any

from automtl.model.blocks import dense_block
from automtl.model.sharing.base import Shared, SharingScheme
from automtl.trial import TrialParams


class HardSharing(SharingScheme):
    """``trunk.depth`` dense layers of ``trunk.units`` shared by all tasks."""

    def build(self, features: Any, tasks: list[str], params: TrialParams) -> Shared:
        depth = params.trunk_depth
        trunk = dense_block(features, params.trunk_units, depth, params.dropout, params.l2, name="trunk",
                            norm=params.norm)
        return Shared({t: trunk for t in tasks}, [f"trunk_dense{depth - 1}"] if depth > 0 else [])
