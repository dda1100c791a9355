"""CAGrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone and Liu, 2021).

With ``g_0`` the average task gradient on the shared variables, the update
``d`` maximises the worst task's first-order improvement ``min_i g_i . d``
within a ball around the average, ``|d - g_0| <= c |g_0|``. Its dual is a
small problem over the simplex of task weights ``w``:

    min_w  g_w . g_0 + c |g_0| |g_w|,   g_w = sum_i w_i g_i,

and then ``d = g_0 + (c |g_0| / |g_w|) g_w``, divided by ``1 + c^2`` as in
the paper's code. ``c = 0`` is plain gradient descent on the summed loss.

Everything runs on the ``[T, T]`` Gram matrix ``A = G G^T``: the dual is
solved by pairwise Frank-Wolfe steps, each with an exact (closed-form) line
search, which is exact in one step for two tasks; ``d`` is then one weighted
sum of the task gradients. The update is scaled by the number of tasks so
that it equals the summed loss's gradient when ``c = 0``; the effective
weight of task ``i`` is its coefficient ``(1 + T lambda w_i) / (1 + c^2)``.
"""

from __future__ import annotations

from typing import Any, Sequence

from automtl.core.params import ParamSpec
from automtl.core.trial_params import TrialParams
from automtl.lazy import tf
from automtl.training.weighting.base import EPS, Weighting

#: Pairwise Frank-Wolfe steps per task for three tasks or more (two tasks need one step).
STEPS_PER_TASK = 8


class CAGrad(Weighting):
    parameters = (
        ParamSpec("cagrad_c", 0.4, low=0, high=1,
                  doc="radius of the ball around the average gradient, relative to its norm (0: plain sum)"),
    )
    per_task_gradients = True

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        super().__init__(tasks, params)
        self.c = float(self.value(params, "cagrad_c"))

    def combine_gradients(self, grads, gram):
        w = conflict_averse_weights(gram, self.c)
        self.note_weights(w)
        return tf.linalg.matvec(grads, w, transpose_a=True)


def conflict_averse_weights(gram, c: float, steps: int | None = None) -> Any:
    """The ``[T]`` coefficients ``v`` with ``T d / (1 + c^2) = sum_i v_i g_i`` (CAGrad's update) from ``G G^T``."""
    T = int(gram.shape[0])
    gram = tf.cast(gram, tf.float32)
    b = tf.fill([T], 1.0 / T)
    g0_norm = tf.sqrt(tf.maximum(tf.tensordot(b, tf.linalg.matvec(gram, b), 1), 0.0))
    radius = c * g0_norm
    w = solve_dual(gram, radius, steps if steps is not None else (1 if T == 2 else STEPS_PER_TASK * T))
    gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1), 0.0))
    lam = radius / (gw_norm + EPS)
    return T * (b + lam * w) / (1.0 + c * c)


def dual_objective(gram, radius, w):
    """``g_w . g_0 + radius |g_w|`` for weights ``w`` (the CAGrad dual)."""
    T = int(gram.shape[0])
    aw = tf.linalg.matvec(gram, w)
    return tf.reduce_sum(aw) / T + radius * tf.sqrt(tf.maximum(tf.tensordot(w, aw, 1), 0.0))


def solve_dual(gram, radius, steps: int):
    """Minimise the dual over the simplex by pairwise Frank-Wolfe steps from the uniform weights.

    Each step moves weight from the support's worst vertex ``v`` (largest partial derivative) to the best
    vertex ``s`` (smallest), by the exact minimiser of the convex objective along ``e_s - e_v``: on that
    segment it is ``p gamma + radius sqrt(q0 + 2 q1 gamma + q2 gamma^2)``, whose stationary point has a
    closed form; the step compares it with both ends of the segment.
    """
    T = int(gram.shape[0])
    w = tf.fill([T], 1.0 / T)
    for _ in range(steps) if steps == 1 else tf.range(steps):  # a graph loop: tracing stays short
        aw = tf.linalg.matvec(gram, w)
        q0 = tf.maximum(tf.tensordot(w, aw, 1), 0.0)
        grad = tf.reduce_sum(gram, axis=1) / T + radius * aw / (tf.sqrt(q0) + EPS)
        s = tf.argmin(grad)
        v = tf.argmax(tf.where(w > 0, grad, -float("inf")))
        d = tf.one_hot(s, T) - tf.one_hot(v, T)
        ad = tf.linalg.matvec(gram, d)
        p = tf.reduce_sum(ad) / T
        q1 = tf.tensordot(d, aw, 1)
        q2 = tf.maximum(tf.tensordot(d, ad, 1), 0.0)
        top = tf.gather(w, v)
        gap = tf.maximum(q0 * q2 - q1 * q1, 0.0)  # >= 0 (Cauchy-Schwarz): q never goes below zero
        room = radius * radius * q2 - p * p
        u = -p * tf.sqrt(gap / tf.maximum(room, EPS))  # q1 + q2 gamma at the stationary point
        inner = tf.clip_by_value(tf.where(room > 0, (u - q1) / tf.maximum(q2, EPS), 0.0), 0.0, top)
        candidates = tf.stack([tf.zeros_like(top), top, inner])
        values = p * candidates + radius * tf.sqrt(tf.maximum(q0 + 2 * q1 * candidates + q2 * candidates**2, 0.0))
        gamma = tf.gather(candidates, tf.argmin(values))
        w = w + gamma * d
    return w
