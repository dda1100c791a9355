"""Sharing schemes: how tasks share parameters between the inputs and their heads.

Each scheme maps the shared feature vector to one feature tensor per task and
names its last shared layers (GradNorm measures gradient norms there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from automtl.model.blocks import dense_block
from automtl.model.layers import GatedMixture
from automtl.params import TrialParams


@dataclass
class Shared:
    per_task: dict[str, Any]
    last_layers: list[str]


def hard_sharing(features: Any, tasks: list[str], params: TrialParams) -> Shared:
    """One trunk for all tasks (hard parameter sharing)."""
    depth = params.trunk_depth
    trunk = dense_block(features, params.trunk_units, depth, params.dropout, params.l2, name="trunk")
    return Shared({t: trunk for t in tasks}, [f"trunk_dense{depth - 1}"] if depth > 0 else [])


def mmoe(features: Any, tasks: list[str], params: TrialParams) -> Shared:
    """Multi-gate mixture of experts (Ma et al., 2018): shared experts, one softmax gate per task."""
    n = int(params.get("experts", 4))
    units = int(params.get("expert_units", params.trunk_units))
    depth = max(1, params.trunk_depth)
    experts = [dense_block(features, units, depth, params.dropout, params.l2, name=f"expert{k}") for k in range(n)]
    per_task = {}
    for t in tasks:
        gate = keras.layers.Dense(n, name=f"gate_{t}")(features)
        per_task[t] = GatedMixture(name=f"mixture_{t}")([gate, *experts])
    return Shared(per_task, [f"expert{k}_dense{depth - 1}" for k in range(n)])


SCHEMES: dict[str, Callable[[Any, list[str], TrialParams], Shared]] = {"hard": hard_sharing, "mmoe": mmoe}
