"""Loss weighting methods for joint training, one small file each.

A method turns the vector of per-task (masked) losses into the scalar the
optimizer minimises. Some learn (uncertainty), some adapt between steps
(GradNorm) or epochs (DWA). The trainer picks one by the searched
``weighting`` parameter from :data:`METHODS`; there is no class building on
the fly.
"""

from __future__ import annotations

from automtl.training.weighting.base import Weighting
from automtl.training.weighting.dwa import DynamicWeightAverage
from automtl.training.weighting.gradnorm import GradNorm
from automtl.training.weighting.max import MaxLoss
from automtl.training.weighting.static import StaticWeights
from automtl.training.weighting.uncertainty import UncertaintyWeights

METHODS: dict[str, type[Weighting]] = {
    "static": StaticWeights,
    "max": MaxLoss,
    "uncertainty": UncertaintyWeights,
    "gradnorm": GradNorm,
    "dwa": DynamicWeightAverage,
}

__all__ = ["METHODS", "Weighting"]
