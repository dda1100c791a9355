"""Shared set-up for the benchmarks: the digits demo, prepared as a search would."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from automtl.config import load_experiment
from automtl.core.plugins import write_demo
from automtl.data.arrays import Prepared
from automtl.data.prepare import instantiate, prepare


def demo_experiment(overrides: dict | None = None, folder: Path | None = None):
    folder = folder or Path(tempfile.mkdtemp(prefix="automtl-bench-"))
    return load_experiment(write_demo("digits", folder / "data"), {"out": folder / "run", **(overrides or {})})


def demo_prepared(overrides: dict | None = None) -> Prepared:
    exp = demo_experiment(overrides)
    encoders, tasks = instantiate(exp)
    return prepare(exp, encoders, tasks)
