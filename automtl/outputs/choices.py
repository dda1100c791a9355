"""A trial's parameters in a few words, for trial lines, leaderboards and reports."""

from __future__ import annotations

from typing import Any


def short_params(params: dict[str, Any]) -> str:
    bits = []
    if "strategy" in params:
        bits.append(str(params["strategy"]))
    if "weighting" in params:
        bits.append(str(params["weighting"]))
    if "trunk.depth" in params or "trunk.units" in params:
        bits.append(f"trunk {params.get('trunk.depth', '?')}x{params.get('trunk.units', '?')}")
    if "image.backbone" in params:  # the input's trunk, when searched
        bits.append(" ".join(str(params[k]) for k in ("image.backbone", "image.fine_tune") if k in params))
    if "text.encoder" in params:
        bits.append(str(params["text.encoder"]))
    if "learning_rate" in params:
        bits.append(f"lr {params['learning_rate']:.2g}")
    return ", ".join(bits)
