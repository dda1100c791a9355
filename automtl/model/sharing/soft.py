"""Soft parameter sharing: per-task copies pulled together by an L2 penalty on their difference."""

from __future__ import annotations

from automtl.core.params import ParamSpec
from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Trunk, shared_last


class SoftSharing(SharingScheme):
    """Each task has its own copy of every level; the training loss gains
    ``soft.strength * sum over pairs of tasks ||W_a - W_b||^2`` over corresponding kernels.

    The copies start equal (every copy takes the first one's initial values),
    so a large strength keeps them near hard sharing and a small one lets
    them drift apart as their tasks need. In joint training the sum over all
    pairs is added to the loss; in
    alternating training each step moves only the trained task's variables,
    so that task pays its own terms (the gradient of the other terms on its
    kernels is zero).
    """

    auto_space = {"soft.strength": {"float": [1.0e-3, 1.0], "log": True}}
    auto_rank = 3

    parameters = (
        ParamSpec("soft.strength", 1e-3, low=0, doc="weight of the L2 pull between the tasks' copies (search it log-scaled)"),
    )

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        from automtl.model.layers import SoftTie

        per_task = {t: trunk.run(trunk.begin(), 0, trunk.depth, tag=t).tensors for t in tasks}
        groups = []
        for copies in trunk.made.values():
            layers = list(copies.values())
            for key in layers[0]:
                for same in zip(*[by_key[key].weights for by_key in layers]):
                    for w in same[1:]:
                        w.assign(same[0])
                    if same[0].trainable and len(same[0].shape) >= 2:
                        groups.append(list(same))
        tie = SoftTie(float(self.value(params, "soft.strength")), name="soft_sharing")
        tie.tie(groups)
        last, said = shared_last(trunk, 0)
        return Shared(per_task, last, said, penalties=[tie])
