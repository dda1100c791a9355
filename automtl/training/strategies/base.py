"""What a training strategy is given and what it builds: compiled epochs over in-memory or streamed batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from automtl.core.params import Declared
from automtl.core.trial_params import TrialParams
from automtl.lazy import tf

if TYPE_CHECKING:
    from automtl.plugin_base import Task
    from automtl.data.arrays import Arrays
    from automtl.model.assemble import Assembled
    from automtl.training.weighting import Weighting

#: ``augment(x, y, mask) -> (x, y, mask)``: the input plugins' training-time augmentation of one batch.
Augment = Callable[[dict, dict, dict], tuple[dict, dict, dict]]


def regularisation(model: Any) -> Any:
    """The model's own losses (L2 penalties), summed in float32."""
    return tf.add_n([tf.cast(l, tf.float32) for l in model.losses]) if model.losses else tf.constant(0.0)


def apply_gradients(optimizer: Any, loss: Any, tape: Any, variables: list) -> None:
    """One optimizer step on ``loss`` (with loss scaling under mixed precision)."""
    if optimizer.loss_scale is not None:
        optimizer.loss_scale.minimize(optimizer, loss, tape, variables)
        return
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])


def gather(tensors: dict[str, Any], idx: Any) -> dict[str, Any]:
    return {k: tf.gather(v, idx) for k, v in tensors.items()}


class Strategy(Declared):
    """One way of training the tasks together. Subclasses build the compiled epochs.

    ``train`` is the training split (for strategies that sample by label),
    ``rng`` a ``tf.random.Generator`` and ``np_rng`` a numpy one, both seeded
    per trial; ``augment`` applies the inputs' augmentation to a batch.
    """

    #: the joint strategy's loss weighting (None for strategies that weight nothing)
    weighting: "Weighting | None" = None
    #: it combines the task losses with the searched ``weighting`` (trial summaries then name the weighting)
    weights_losses: ClassVar[bool] = False
    #: facts about this trial's training worth keeping in its history (the first epoch's row)
    notes: dict[str, str] = {}
    #: every optimizer the strategy steps (the trainer sets their learning rates per epoch)
    optimizers: list = []

    def __init__(self, assembled: "Assembled", tasks: Sequence["Task"], params: TrialParams, train: "Arrays",
                 rng: Any, np_rng: np.random.Generator, augment: Augment) -> None:
        self.assembled = assembled
        self.model = assembled.model
        self.tasks = list(tasks)
        self.params = params
        self.train = train
        self.rng = rng
        self.np_rng = np_rng
        self.augment = augment

    def in_memory_epoch(self, x: dict, y: dict, m: dict, batch: int, steps: int) -> Callable[[], Any]:
        """A compiled function running one epoch over tensors in memory; returns the mean loss per task."""
        raise NotImplementedError

    def streamed_epoch(self, dataset: Any) -> np.ndarray:
        """One epoch over a batched ``tf.data`` dataset of ``(x, y, mask)``; the mean loss per task."""
        raise NotImplementedError
