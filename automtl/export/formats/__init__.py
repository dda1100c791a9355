"""Export formats: the SavedModel (always) and the formats converted from its ``portable`` signature.

Each converted format is one file declaring an :class:`~automtl.core.formats.ExportFormat`,
registered under the ``automtl.formats`` entry-point group (the built-in ``onnx``
and ``tflite`` as a third party's would be). This module is light (no
TensorFlow): the CLI checks the requested formats and their optional
dependencies before anything heavy loads. A format's writer takes any export
folder that holds a SavedModel with a ``portable`` signature and a
``preprocessing.json`` (a trial's or an ensemble's), plus validation rows for
the parity check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from automtl.core import registry
from automtl.core.formats import ExportFormat
from automtl.errors import AutomtlError, ConfigError

#: What every export holds; the other formats are converted from it.
SAVED_MODEL = "saved_model"


def declared() -> dict[str, ExportFormat]:
    """The installed formats beside the SavedModel, by name."""
    return dict(registry.members("format"))


def names() -> list[str]:
    """Every format an export may hold: the SavedModel first, then the installed ones."""
    return [SAVED_MODEL] + registry.names("format")


def parse_formats(text: str | list[str] | tuple[str, ...], where: str = "--format") -> list[str]:
    """``"saved_model,onnx"`` -> ``["saved_model", "onnx"]``; the SavedModel is always written first."""
    items = [t.strip().lower().replace("-", "_") for t in (text.split(",") if isinstance(text, str) else text)]
    formats = declared()
    alias = {a: f.name for f in formats.values() for a in f.aliases}
    items = [alias.get(t, t) for t in items if t]
    unknown = [t for t in items if t != SAVED_MODEL and t not in formats]
    if unknown:
        raise AutomtlError(f"{where}: unknown format(s) {', '.join(unknown)}; expected any of {', '.join(names())}")
    return [SAVED_MODEL] + [f for f in formats if f in items]


def require_extras(formats: list[str]) -> None:
    """A clear error naming the pip extra when a format's libraries are not installed."""
    found = declared()
    for fmt in formats:
        if fmt in found:
            found[fmt].require()


def write_format(fmt: str, export_dir: Path, rows: Mapping[str, Any]) -> dict[str, Any]:
    """Convert ``export_dir/saved_model``'s portable signature to ``fmt``, check parity on ``rows``, time it."""
    try:
        declaration = registry.member("format", fmt)
    except ConfigError as exc:
        raise AutomtlError(str(exc)) from None
    return declaration.write(Path(export_dir), rows)
