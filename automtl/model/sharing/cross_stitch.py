"""Cross-stitch networks (Misra et al., 2016): per-task copies mixed after every level by learned units."""

from __future__ import annotations

from automtl.core.params import ParamSpec
from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Trunk, mix, shared_last


class CrossStitchSharing(SharingScheme):
    """Each task has its own copy of every level; after each level, task ``t`` reads
    ``sum_s alpha[t, s] x_s`` of the tasks' outputs, ``alpha`` learned per level and
    stream entry, starting at ``cross_stitch.self`` on the diagonal (0.9) and the
    rest spread over the other tasks."""

    parameters = (
        ParamSpec("cross_stitch.self", 0.9, low=0, high=1, doc="initial weight of a task's own copy in each unit"),
    )

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        from automtl.model.layers import CrossStitch

        own = float(self.value(params, "cross_stitch.self"))
        streams = [trunk.begin() for _ in tasks]
        for k in range(trunk.depth):
            streams = [trunk.run(s, k, k + 1, tag=t) for s, t in zip(streams, tasks)]
            if len(tasks) > 1:
                streams = mix(streams, trunk.keys(k, k + 1),
                              lambda key, xs, k=k: CrossStitch(own, name=f"cross_stitch{k}_{key}")(xs))
        streams = [trunk.run(s, trunk.depth, trunk.depth, tag=t) for s, t in zip(streams, tasks)]  # the join, if last
        last, said = shared_last(trunk, 0)
        return Shared({t: s.tensors for t, s in zip(tasks, streams)}, last, said)
