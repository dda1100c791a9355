"""Modules imported on first use, so that declaring an extension stays light.

Weighting methods, strategies and sharing schemes are imported to read their
declarations (names, parameters) when a space file is checked, before any
training; their TensorFlow code runs only when a trial trains. ``from
automtl.lazy import tf`` gives them a ``tf`` that imports TensorFlow the first
time one of its attributes is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A stand-in for a module, imported on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}{' (loaded)' if self._module else ''}>"


tf = LazyModule("tensorflow")
keras = LazyModule("keras")
