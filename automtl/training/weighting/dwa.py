"""Dynamic weight average (Liu, Johns and Davison, 2019).

After two epochs, each task's weight is ``T * softmax(r / temperature)`` with
``r_i = L_i(t-1) / L_i(t-2)``: a task whose loss falls more slowly gets more
weight. The first two epochs use equal weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from automtl.core.params import positive
from automtl.core.trial_params import TrialParams
from automtl.training.weighting.base import Weighting


class DynamicWeightAverage(Weighting):
    parameters = (positive("dwa_temperature", 2.0, "softmax temperature over the loss ratios"),)

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        super().__init__(tasks, params)
        self.temperature = float(self.value(params, "dwa_temperature"))
        self.history: list[np.ndarray] = []

    def end_epoch(self, epoch_losses: np.ndarray) -> None:
        self.history.append(np.asarray(epoch_losses, np.float64))
        if len(self.history) < 2:
            return
        prev, prev2 = self.history[-1], self.history[-2]
        ratio = prev / np.maximum(prev2, 1e-12)
        z = np.exp((ratio - ratio.max()) / self.temperature)
        self.weights.assign((self.T * z / z.sum()).astype(np.float32))
