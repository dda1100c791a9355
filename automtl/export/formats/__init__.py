"""Export formats: the SavedModel (always) and ONNX / LiteRT models converted from its ``portable`` signature.

This module is light (no TensorFlow): the CLI checks the requested formats and
their optional dependencies before anything heavy loads. A format writer
(:func:`write_format`) takes any export folder that holds a SavedModel with a
``portable`` signature and a ``preprocessing.json`` (a trial's export today,
an ensemble's later), plus validation rows for the parity check.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

from automtl.errors import AutomtlError

FORMATS = ("saved_model", "onnx", "tflite")
#: The pip extra and the import names each converted format needs.
EXTRAS = {"onnx": ("onnx", ("tf2onnx", "onnxruntime", "onnx"))}
#: The file each converted format writes in the export folder.
FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}


def parse_formats(text: str | list[str] | tuple[str, ...], where: str = "--format") -> list[str]:
    """``"saved_model,onnx"`` -> ``["saved_model", "onnx"]``; the SavedModel is always written first."""
    items = [t.strip().lower().replace("-", "_") for t in (text.split(",") if isinstance(text, str) else text)]
    items = ["tflite" if t in ("litert", "lite") else t for t in items if t]
    unknown = [t for t in items if t not in FORMATS]
    if unknown:
        raise AutomtlError(f"{where}: unknown format(s) {', '.join(unknown)}; expected any of {', '.join(FORMATS)}")
    return ["saved_model"] + [f for f in FORMATS[1:] if f in items]


def require_extras(formats: list[str]) -> None:
    """A clear error naming the pip extra when a format's libraries are not installed."""
    for fmt in formats:
        if fmt not in EXTRAS:
            continue
        extra, modules = EXTRAS[fmt]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise AutomtlError(f"format '{fmt}' needs {', '.join(missing)}: pip install 'automtl[{extra}]'")


def write_format(fmt: str, export_dir: Path, rows: Mapping[str, Any]) -> dict[str, Any]:
    """Convert ``export_dir/saved_model``'s portable signature to ``fmt``, check parity on ``rows``, time it."""
    if fmt == "onnx":
        from automtl.export.formats.onnx import write_onnx

        return write_onnx(Path(export_dir), rows)
    if fmt == "tflite":
        from automtl.export.formats.tflite import write_tflite

        return write_tflite(Path(export_dir), rows)
    raise AutomtlError(f"unknown export format '{fmt}'")
