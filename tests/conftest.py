"""Shared fixtures: tiny generated data sets and experiment files, tiny budgets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", os.environ.get("AUTOMTL_TEST_GPUS", "-1"))

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent

#: A tiny space so end-to-end tests take seconds (one definition, shared with the bad-input bench).
from bad_input_cases import SPACE as TINY_SPACE  # noqa: E402


def make_table(n: int = 300, seed: int = 0) -> "Any":
    """Numeric + categorical features; a regression and a string-label classification target."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    city = rng.choice(["north", "south", "east"], size=n)
    shift = np.select([city == "north", city == "south"], [1.0, -1.0], 0.0)
    price = 50 + 10 * x[:, 0] - 5 * x[:, 1] + 8 * shift + rng.normal(scale=1.0, size=n)
    kind = np.where(x[:, 2] + 0.5 * x[:, 3] + shift > 0, "premium", "basic")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    frame["city"] = city
    frame["price"] = price
    frame["kind"] = kind
    return frame


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    make_table().to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return path


def experiment_dict(train: Path, space: Path, **search: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "data": {"train": str(train), "valid_fraction": 0.25},
        "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
        "tasks": [
            {"name": "price", "type": "regression", "target": "price"},
            {"name": "kind", "type": "classification", "target": "kind"},
        ],
        "space": str(space),
        # trials in this process: quicker for tiny tests (tests/test_worker.py covers worker processes);
        # no refit, baselines or ensemble after the trials (they double a tiny search's time): the tests
        # of those steps ask for them (tests/test_ensemble_e2e.py, test_search_e2e.py, test_splits.py)
        "search": {"trials": 2, "epochs": 3, "seed": 0, "trials_per_process": 0, **LEAN_ENDING, **search},
    }


#: What a tiny test search skips after its trials (see :func:`experiment_dict`).
LEAN_ENDING = {"refit": False, "baselines": "off", "ensemble": 0}
#: The same for ``automtl search --demo ...`` in a test that is not about those steps.
LEAN_FLAGS = ("--baselines", "off", "--ensemble", "0", "--no-refit")


def default_ending(exp: dict[str, Any]) -> dict[str, Any]:
    """``exp`` (an :func:`experiment_dict`) with the search's own defaults for what follows the trials:
    refit, auto baselines, an ensemble once two trials completed."""
    for key in LEAN_ENDING:
        exp["search"].pop(key, None)
    return exp


@pytest.fixture
def write_experiment(tmp_path: Path, table_csv: Path, tiny_space: Path) -> Callable[..., Path]:
    """Write an experiment YAML; keyword arguments update the top-level keys."""

    def write(name: str = "experiment.yaml", **updates: Any) -> Path:
        exp = experiment_dict(table_csv, tiny_space, out=str(tmp_path / "run"))
        for key, value in updates.items():
            exp[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(exp))
        return path

    return write


@pytest.fixture(scope="module")
def postgres_url() -> Any:
    """A throwaway PostgreSQL server's URL (see ``pgcluster.py``), shared by a module's tests; skipped without one."""
    from pgcluster import missing, postgres_server

    reason = missing()
    if reason:
        pytest.skip(reason)
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits demo searched once per test session (3 trials x 2 epochs, with its report).

    Every pytest-xdist worker of the session shares it: the first to get the
    lock runs the search, the others wait and read it. Tests only read it; a
    test that would change a run copies it first. It lies at ``.../runs/digits``,
    so ``automtl search --demo digits`` run from two folders up resolves to it.
    """
    import fcntl

    from automtl.cli import cli as group

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-digits"
    shared.mkdir(exist_ok=True)
    run = shared / "runs" / "digits"
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (run / "report.html").is_file():
                result = CliRunner().invoke(group, ["search", "--demo", "digits", "--trials", "3", "--epochs", "2",
                                                    "--out", str(run)], catch_exceptions=False)
                assert result.exit_code == 0, result.output
                assert "report: " in result.output
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return run


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Invoke the CLI in-process; returns Click's Result."""
    from automtl.cli import cli as group

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)

    return invoke


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    # A slow test or a GPU test is never part of the unit loop (``pytest -m "not e2e"``).
    for item in items:
        if ("slow" in item.keywords or "gpu" in item.keywords) and "e2e" not in item.keywords:
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("AUTOMTL_TEST_GPUS"):
        return
    skip = pytest.mark.skip(reason="needs a GPU (set AUTOMTL_TEST_GPUS to run)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


#: Most pytest-xdist workers ``-n auto`` starts: each imports TensorFlow and many tests start trial
#: processes of their own, so more workers than this only add memory and contention.
MAX_AUTO_WORKERS = 4


@pytest.hookimpl(optionalhook=True)  # known to pytest only with pytest-xdist installed
def pytest_xdist_auto_num_workers(config: Any) -> int | None:
    """``-n auto``: one worker per core, at most :data:`MAX_AUTO_WORKERS` (the suite is mostly
    single-threaded Python, so the 2-core CI machine runs it in about half the time);
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))
