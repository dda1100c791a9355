"""Multi-gate mixture of experts (Ma et al., 2018): shared experts, one softmax gate per task."""

from __future__ import annotations

from typing import Any

from automtl.model.blocks import dense_block
from automtl.model.sharing.base import Shared, SharingScheme
from automtl.params import ParamSpec, positive_int
from automtl.trial import TrialParams


class MixtureOfExperts(SharingScheme):
    """``experts`` dense experts of ``trunk.depth`` layers; each task mixes them with its own gate."""

    parameters = (
        positive_int("experts", 4, "number of shared experts"),
        ParamSpec("expert_units", None, low=1, integer=True, doc="width of each expert (default: trunk.units)"),
    )

    def build(self, features: Any, tasks: list[str], params: TrialParams) -> Shared:
        import keras

        from automtl.model.layers import GatedMixture

        n = int(self.value(params, "experts"))
        units = int(self.value(params, "expert_units") or params.trunk_units)
        depth = max(1, params.trunk_depth)
        experts = [dense_block(features, units, depth, params.dropout, params.l2, name=f"expert{k}", norm=params.norm)
                   for k in range(n)]
        per_task = {}
        for t in tasks:
            gate = keras.layers.Dense(n, name=f"gate_{t}")(features)
            per_task[t] = GatedMixture(name=f"mixture_{t}")([gate, *experts])
        return Shared(per_task, [f"expert{k}_dense{depth - 1}" for k in range(n)])
