"""A trial's parameters in a few words, for trial lines, leaderboards and reports."""

from __future__ import annotations

from typing import Any


def short_params(params: dict[str, Any]) -> str:
    bits = []
    if "strategy" in params:
        bits.append(str(params["strategy"]))
    if "trunk.depth" in params or "trunk.units" in params:
        bits.append(f"trunk {params.get('trunk.depth', '?')}x{params.get('trunk.units', '?')}")
    for key in ("image.backbone", "text.encoder"):  # the input trunk, when searched
        if key in params:
            bits.append(str(params[key]) + (f" {params['image.fine_tune']}" if key == "image.backbone" and "image.fine_tune" in params else ""))
    if "learning_rate" in params:
        bits.append(f"lr {params['learning_rate']:.2g}")
    return ", ".join(bits)
