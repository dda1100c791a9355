"""Writing manifests to a folder: YAML documents, and never over a file automtl did not write."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from automtl.errors import ConfigError

#: Every object automtl writes carries this label; a file without it is the user's and is never replaced.
MARK = "app.kubernetes.io/managed-by: automtl"


def write_manifests(files: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """Write each file's documents (``---`` between them); the Secret's file is readable by its owner only."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, expected a folder")
    for name in files:
        path = out / name
        if path.exists() and MARK not in path.read_text(errors="replace"):
            raise ConfigError(f"--out {out}: {name} exists and was not written by automtl; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in files.items():
        path = out / name
        text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if "secret" in name else 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        written.append(path)
    return written
