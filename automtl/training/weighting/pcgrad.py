"""PCGrad: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman and Finn, 2020).

For each task ``i`` in turn, the other tasks' gradients on the shared
variables are visited in a random order; wherever ``g_i`` (as projected so
far) has a negative inner product with ``g_j``, its component along ``g_j``
is removed: ``g_i -= (g_i . g_j / |g_j|^2) g_j``. The shared update is the
sum of the projected gradients; with two tasks it never has a negative inner
product with either task's gradient.

Every projected gradient is a linear combination of the original ones, so
the projections run on the ``[T, T]`` Gram matrix (coefficients, not
``D``-sized vectors) and the update is one weighted sum: the effective
weight of task ``i`` is its coefficient in that sum.
"""

from __future__ import annotations

from typing import Any

from automtl.lazy import tf
from automtl.training.weighting.base import EPS, Weighting


class PCGrad(Weighting):
    per_task_gradients = True

    def setup_gradients(self, dim: int, rng: Any) -> None:
        self.rng = rng

    def combine_gradients(self, grads, gram):
        w = projected_weights(gram, self.rng)
        self.note_weights(w)
        return tf.linalg.matvec(grads, w, transpose_a=True)


def projected_weights(gram, rng: Any = None):
    """The ``[T]`` coefficients ``w`` with ``sum_i g_i^PC = sum_j w_j g_j``, from the Gram matrix ``G G^T``.

    ``rng`` (a ``tf.random.Generator``) draws each task's visiting order; without one, tasks are visited in
    index order.
    """
    T = int(gram.shape[0])
    sq = tf.linalg.diag_part(gram)
    rows = []
    for i in range(T):
        order = tf.argsort(rng.uniform([T])) if rng is not None else tf.range(T)
        coef = tf.one_hot(i, T, dtype=gram.dtype)  # g_i^PC = coef . G
        for k in range(T):
            j = order[k]
            dot = tf.tensordot(coef, gram[:, j], 1)  # g_i^PC . g_j
            step = tf.where(dot < 0, dot / (tf.gather(sq, j) + EPS), tf.zeros_like(dot))
            coef = coef - step * tf.one_hot(j, T, dtype=gram.dtype)
        rows.append(coef)
    return tf.add_n(rows)
