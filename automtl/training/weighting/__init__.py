"""Loss weighting methods for joint training, one small file each.

A method turns the vector of per-task (masked) losses into the scalar the
optimizer minimises. Some learn (uncertainty), some adapt between steps
(GradNorm) or epochs (DWA). Each registers under the ``automtl.weightings``
entry-point group and declares its own parameters; the joint strategy picks
one by the searched ``weighting`` parameter through :mod:`automtl.core.registry`.
"""

from automtl.training.weighting.base import Weighting

__all__ = ["Weighting"]
