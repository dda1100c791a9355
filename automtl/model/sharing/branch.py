"""Branching: the first ``branch.at`` levels are shared, the rest are copied per task."""

from __future__ import annotations

from automtl.core.params import ParamSpec
from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Trunk, shared_last


class BranchSharing(SharingScheme):
    """Share the first ``branch.at`` levels (conv stages, encoder layers, then dense layers),
    copy the rest: 0 is ``none``; the trunk's depth or more is ``hard``."""

    auto_space = {"branch.at": {"int": [0, 3]}}
    auto_rank = 2

    parameters = (
        ParamSpec("branch.at", 1, low=0, integer=True,
                  doc="levels shared before the tasks branch (encoder blocks then dense layers; capped by the depth)"),
    )

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        at = min(int(self.value(params, "branch.at")), trunk.depth)
        common = trunk.run(trunk.begin(), 0, at)
        per_task = {t: trunk.run(common, at, trunk.depth, tag=t).tensors for t in tasks}
        last, said = shared_last(trunk, at)
        return Shared(per_task, last, said)
