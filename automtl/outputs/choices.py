"""A trial's parameters in a few words, for trial lines, leaderboards and reports."""

from __future__ import annotations

from typing import Any


def short_params(params: dict[str, Any]) -> str:
    bits = []
    if "sharing" in params:  # the scheme and its main parameter: how much the tasks share
        scheme = str(params["sharing"])
        if scheme == "branch" and "branch.at" in params:
            scheme += f" at {params['branch.at']}"
        elif scheme == "soft" and "soft.strength" in params:
            scheme += f" {float(params['soft.strength']):.2g}"
        bits.append(scheme)
    if "strategy" in params:
        bits.append(str(params["strategy"]))
    if "weighting" in params:
        bits.append(str(params["weighting"]))
    if "trunk.depth" in params or "trunk.units" in params:
        bits.append(f"trunk {params.get('trunk.depth', '?')}x{params.get('trunk.units', '?')}")
    if "learning_rate" in params:
        bits.append(f"lr {params['learning_rate']:.2g}")
    return ", ".join(bits)
