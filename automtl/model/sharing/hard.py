"""Hard parameter sharing: one trunk (encoder blocks and dense layers) for every task."""

from __future__ import annotations

from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Trunk, shared_last


class HardSharing(SharingScheme):
    """Every level is built once and read by every task; only the heads are the tasks' own."""

    auto_space = {}
    auto_rank = 0

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        stream = trunk.run(trunk.begin(), 0, trunk.depth)
        last, said = shared_last(trunk, trunk.depth)
        return Shared({t: stream.tensors for t in tasks}, last, said)
