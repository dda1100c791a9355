"""What an export format declares: its name, the file it writes, its writer and the libraries it needs.

Registered under the ``automtl.formats`` entry-point group (the entry point
names the declaration), like every other axis. A declaration is light to
import: ``automtl export --format NAME`` checks the name and the format's
libraries before TensorFlow starts, and imports the writer only to write.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from automtl.errors import AutomtlError


@dataclass(frozen=True)
class ExportFormat:
    """One format an export folder can hold beside its SavedModel, converted from its ``portable`` signature.

    ``writer``: ``module:function(export_dir, rows) -> dict`` that writes ``file``
    into ``export_dir`` from ``export_dir/saved_model``, checks parity on the
    validation ``rows`` and returns the manifest's entry for the format.
    ``modules``: import names the writer needs, installed by the pip ``extra``.
    """

    name: str
    file: str
    writer: str
    #: other names users may write (``litert`` for ``tflite``)
    aliases: tuple[str, ...] = ()
    #: the pip extra of the package that registers it (``pip install 'automtl[onnx]'``)
    extra: str = ""
    modules: tuple[str, ...] = ()
    #: what it is, in a few words (for `automtl plugins` and messages)
    doc: str = ""

    def missing(self) -> list[str]:
        """The modules it needs that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def require(self) -> None:
        """A clear error naming the pip extra when its libraries are not installed."""
        missing = self.missing()
        if missing:
            how = f": pip install 'automtl[{self.extra}]'" if self.extra else ""
            raise AutomtlError(f"format '{self.name}' needs {', '.join(missing)}{how}")

    def write(self, export_dir: Path, rows: Mapping[str, Any]) -> dict[str, Any]:
        """Convert ``export_dir/saved_model`` to this format (see :attr:`writer`)."""
        self.require()
        module, _, fn = self.writer.partition(":")
        writer: Callable[[Path, Mapping[str, Any]], dict[str, Any]] = getattr(importlib.import_module(module), fn)
        return writer(Path(export_dir), rows)
