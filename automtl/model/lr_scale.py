"""Per-layer learning-rate scales: a layer marked here learns at ``learning_rate * scale``.

An input plugin marks layers it builds (a pretrained backbone learns slower
than the fresh layers on top of it); the trainer's optimizer reads the marks
through :func:`variable_scales`. A mark on a nested model covers every layer
inside it, unless an inner layer carries its own mark.
"""

from __future__ import annotations

from typing import Any

ATTRIBUTE = "_automtl_lr_scale"


def scale_learning_rate(layer: Any, scale: float) -> Any:
    """Make ``layer``'s trainable variables (and those of the layers inside it) learn at
    ``learning_rate * scale``; returns the layer. ``scale`` must be positive."""
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"a learning-rate scale must be positive, got {scale}")
    object.__setattr__(layer, ATTRIBUTE, scale)  # a plain attribute: not tracked, not saved
    return layer


def variable_scales(model: Any) -> dict[int, float]:
    """``id(variable) -> scale`` for every variable under a marked layer of ``model`` (others: 1.0)."""
    scales: dict[int, float] = {}

    def visit(layer: Any) -> None:
        scale = getattr(layer, ATTRIBUTE, None)
        if scale is not None:
            for v in layer.trainable_variables:
                scales[id(v)] = scale
        for inner in getattr(layer, "layers", ()):  # nested models: inner marks override
            visit(inner)

    for layer in model.layers:
        visit(layer)
    return scales
