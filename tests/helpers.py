"""Build prepared data and trainers directly (without a search) for focused tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automtl.api import InputEncoder, Task
from automtl.data.arrays import Arrays, to_arrays
from automtl.data.table import Table


def prepared(encoders: list[InputEncoder], tasks: list[Task], train: Table, valid: Table) -> tuple[Arrays, Arrays]:
    for plugin in (*encoders, *tasks):
        plugin.prepare(train)
    return to_arrays(encoders, tasks, train), to_arrays(encoders, tasks, valid)


def table_from(frame: Any, source: str = "mem.csv") -> Table:
    cols = {}
    for name in frame.columns:
        s = frame[name]
        cols[name] = s.to_numpy() if s.dtype.kind in "fiub" else s.to_numpy(dtype=object, na_value=None)
    return Table(source, cols)


def train_once(encoders, tasks, train: Arrays, valid: Arrays, params: dict, epochs: int = 20, seed: int = 0):
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    p = TrialParams(params)
    assembled = build_model(encoders, tasks, p)
    trainer = Trainer(assembled, tasks, p, train, valid, {t.name: 1.0 for t in tasks}, seed=seed, encoders=encoders)
    return assembled, trainer, trainer.fit(epochs)


def split(frame: Any, frac: float = 0.25, seed: int = 0) -> tuple[Table, Table]:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(frame))
    n_valid = int(len(frame) * frac)
    return table_from(frame.iloc[idx[n_valid:]].reset_index(drop=True), "train.csv"), table_from(
        frame.iloc[idx[:n_valid]].reset_index(drop=True), "valid.csv")


def assert_user_error(result, *fragments: str) -> None:
    """Bad input through the CLI: exit code 2, no traceback, and each fragment in the message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def fake_distribution(root: Path, package: str, source: str, version: str, group: str, entry: str) -> Path:
    """``root/site`` holding ``package`` and a dist-info declaring one entry point in ``group``, as pip
    would install a third-party plugin; put the returned folder on ``sys.path`` or ``PYTHONPATH``."""
    site = root / "site"
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(source)
    info = site / f"{package}-{version}.dist-info"
    info.mkdir()
    name = package.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    return site
