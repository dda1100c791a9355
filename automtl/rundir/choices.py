"""A trial's parameters in a few words, for trial lines, leaderboards and reports.

What defines the model comes first: the sharing scheme and its setting, how
the tasks train together (strategy, weighting), the encoder (text encoder,
convolution stages x filters, a backbone, or a table's encodings), the dense
trunk and its normalisation, then the learning rate. How an input or task
type's own parameters read is the type's to say: the ``summary`` templates of
its entry in its package's ``auto_space.yaml`` (read without importing the
plugin). Only parameters the trial has are shown (a space that does not search
a choice shows nothing for it); whatever does not fit in one terminal line is
left out from the end. ``automtl trials --params`` shows them all.
"""

from __future__ import annotations

import functools
import string
from typing import Any, Callable

from automtl.core import plugins, registry
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


@functools.lru_cache(maxsize=4)
def _summaries(generation: int) -> tuple[tuple[str, ...], ...]:
    """Each installed input and task type's ``summary`` templates, inputs first (``generation``: the
    installed plugins', so a newly registered type is read)."""
    from automtl.autospace import type_entries

    try:
        entries = type_entries()
    except AutomtlError:  # a malformed auto_space.yaml: `automtl spaces` and `space: auto` report it; lines go on
        return ()
    found = []
    for _, _, entry in entries:
        templates = entry.get("summary") or []
        templates = [templates] if isinstance(templates, str) else templates
        if isinstance(templates, list) and templates and all(isinstance(t, str) for t in templates):
            found.append(tuple(templates))
    return tuple(found)


def _fill(template: str, p: dict[str, Any]) -> str | None:
    """``template`` with the trial's values, or None when the trial lacks one of its parameters."""
    names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    if not all(n in p for n in names):
        return None
    out = []
    for text, field, _, _ in string.Formatter().parse(template):
        out.append(text + (_value(p[field]) if field else ""))
    return "".join(out)


def _encoder(p: dict[str, Any]) -> str:
    """Per type, the first of its summary templates whose parameters the trial has."""
    bits = []
    for templates in _summaries(plugins.generation()):
        shown = next((text for text in (_fill(t, p) for t in templates) if text is not None), None)
        if shown:
            bits.append(shown)
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
