"""A trial's parameters in a few words, for trial lines, leaderboards and reports.

What defines the model comes first: the sharing scheme and its setting, how
the tasks train together (strategy, weighting), the encoder (text encoder,
convolution stages x filters, a backbone, or a table's encodings), the dense
trunk and its normalisation, then the learning rate. Only parameters the trial has are shown (a space that does not
search a choice shows nothing for it); whatever does not fit in one terminal
line is left out from the end. ``automtl trials --params`` shows them all.
"""

from __future__ import annotations

from typing import Any, Callable

from automtl.core import registry
from automtl.errors import AutomtlError

#: Longest summary (a trial line adds its number, score and metrics around it).
MAX_CHARS = 72


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2g}"
    return str(v)


def _member_settings(kind: str, name: str, params: dict[str, Any]) -> str:
    """The member's own (global) parameters the trial has, as ``(a=1, b=2)``."""
    try:
        declared = [s.name for s in getattr(registry.member(kind, name), "parameters", ()) if not s.per_task]
    except AutomtlError:  # a member not installed here (the run came from elsewhere)
        return ""
    bits = [f"{k.removeprefix(name + '_').removeprefix(name + '.')}={_value(params[k])}" for k in declared
            if k in params]
    return f"({', '.join(bits)})" if bits else ""


def _sharing(p: dict[str, Any]) -> str:
    if "sharing" not in p:
        return ""
    return f"{p['sharing']}{_member_settings('sharing', str(p['sharing']), p)}"


def _training(p: dict[str, Any]) -> str:
    strategy = p.get("strategy")
    parts = []
    if strategy is not None:
        parts.append(f"{strategy}{_member_settings('strategy', str(strategy), p)}")
    if "weighting" in p and _weights_losses(strategy):
        parts.append(f"{p['weighting']}{_member_settings('weighting', str(p['weighting']), p)}")
    return "/".join(parts)


def _weights_losses(strategy: Any) -> bool:
    """Whether the trial's strategy combines the task losses with its weighting (its declaration says)."""
    name = registry.AXES["strategy"].default if strategy is None else str(strategy)
    try:
        return bool(getattr(registry.member("strategy", name), "weights_losses", False))
    except AutomtlError:  # a strategy not installed here: show the weighting rather than hide it
        return True


def _encoder(p: dict[str, Any]) -> str:
    bits = []
    backbones = [k for k in p if k.endswith(".backbone")]
    for key in backbones:
        tune = p.get(key.removesuffix(".backbone") + ".fine_tune")
        bits.append(f"backbone {p[key]}" + (f" {tune}" if tune is not None else ""))
    if not backbones and ("image.stages" in p or "image.filters" in p):
        bits.append(f"conv {p.get('image.stages', p.get('trunk.depth', '?'))}x{p.get('image.filters', p.get('trunk.units', '?'))}")
    for key in p:
        if key.endswith(".encoder"):
            bits.append(str(p[key]))
    if "tabular.numeric" in p or "tabular.categorical" in p:  # the tabular input's encodings
        bits.append("tabular " + "+".join(str(p[k]) for k in ("tabular.numeric", "tabular.categorical") if k in p))
    return ", ".join(bits)


def _trunk(p: dict[str, Any]) -> str:
    if "trunk.depth" in p or "trunk.units" in p:
        norm = p.get("norm")
        return f"trunk {p.get('trunk.depth', '?')}x{p.get('trunk.units', '?')}" + (
            f" {norm}-norm" if norm not in (None, "none") else "")
    return ""


def _lr(p: dict[str, Any]) -> str:
    return f"lr {p['learning_rate']:.2g}" if isinstance(p.get("learning_rate"), (int, float)) else ""


#: In order of importance: the later ones go first when the line is too long.
PARTS: tuple[Callable[[dict[str, Any]], str], ...] = (_sharing, _training, _encoder, _trunk, _lr)


def short_params(params: dict[str, Any], max_chars: int = MAX_CHARS) -> str:
    """The choices that define the trial's model, within ``max_chars``."""
    bits = [b for b in (part(params) for part in PARTS) if b]
    while len(bits) > 1 and len(", ".join(bits)) > max_chars:
        bits.pop()
    text = ", ".join(bits)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def all_params(params: dict[str, Any]) -> str:
    """Every parameter, ``name=value``, in the order the space defines them."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
