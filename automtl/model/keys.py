"""Names the model and the training loop share, light to import (no Keras): the training strategies
declare themselves without starting TensorFlow (a rerun with nothing left to do reads them)."""

from __future__ import annotations

#: The key of a task's per-member outputs ``[batch, k, ...]`` among a TabM training model's outputs.
MEMBERS = "{}__members"
