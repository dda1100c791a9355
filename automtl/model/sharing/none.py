"""No sharing: each task gets its own copy of every level (one model of separate towers)."""

from __future__ import annotations

from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Trunk, shared_last


class NoSharing(SharingScheme):
    """One tower per task: the search can always fall back to what separate models get.

    Only what an input keeps shared (its scaling, a text embedding) is common.
    """

    auto_space = {}
    auto_rank = 1

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        per_task = {t: trunk.run(trunk.begin(), 0, trunk.depth, tag=t).tensors for t in tasks}
        last, said = shared_last(trunk, 0)
        return Shared(per_task, last, said)
