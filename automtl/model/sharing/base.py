"""What a sharing scheme declares and builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automtl.params import Declared
from automtl.trial import TrialParams


@dataclass
class Shared:
    """One feature tensor per task, and the last layers every task shares.

    GradNorm measures gradient norms on ``last_layers``' kernels; a scheme
    without a shared layer names none (the trainer then uses every shared
    variable, and says so).
    """

    per_task: dict[str, Any]
    last_layers: list[str]


class SharingScheme(Declared):
    """A way of turning the inputs' feature vector into one feature tensor per task.

    Subclasses declare ``parameters`` (read with :meth:`value`) and implement
    :meth:`build`; they import Keras inside ``build`` so declarations stay light.
    """

    def build(self, features: Any, tasks: list[str], params: TrialParams) -> Shared:
        raise NotImplementedError
