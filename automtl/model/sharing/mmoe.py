"""Multi-gate mixture of experts (Ma et al., 2018): shared experts, one softmax gate per task."""

from __future__ import annotations

from automtl.core.params import ParamSpec, positive_int
from automtl.core.trial_params import TrialParams
from automtl.model.sharing.base import Shared, SharingScheme, Trunk, gated


class MixtureOfExperts(SharingScheme):
    """``experts`` copies of the whole trunk (encoder blocks and dense layers, at least one
    level); each task mixes their outputs with its own softmax gate, computed from the
    inputs' summary (pooled stems, plain inputs' vectors). Maps (images) and sequences
    (text) are mixed the same way as vectors."""

    parameters = (
        positive_int("experts", 4, "number of shared experts"),
        ParamSpec("expert_units", None, low=1, integer=True, doc="width of each expert's dense layers (default: trunk.units)"),
    )

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        n = int(self.value(params, "experts"))
        units = self.value(params, "expert_units")
        trunk = trunk.with_min_depth(1, int(units) if units else None)
        if trunk.depth == 0:
            raise ValueError("mmoe needs at least one level to make experts of (a dense trunk layer or encoder block)")
        experts = [trunk.run(trunk.begin(), 0, trunk.depth, tag=f"expert{k}") for k in range(n)]
        summary = trunk.summary("gate_input")
        per_task = {t: gated(summary, experts, t).tensors for t in tasks}
        last = trunk.last_layers()
        return Shared(per_task, last, "the experts' last level: " + ", ".join(l.name for l in last))
