"""Loss balancing side by side: every weighting method, same architecture, epochs, seeds and splits.

Two problems:

- ``digits``: the digits demo (classify the digit, regress its slant; both
  losses near 1 after the regression target is standardised);
- ``penguins``: the Palmer penguins (``pip install 'automtl[bench]'``):
  species and sex (classification, ``sex`` missing on some rows) next to the
  body mass with its loss in grams squared, as a task that does not
  standardise its target reports it: about a million times the
  cross-entropies.

Each run holds out a test split (20 %, drawn per seed, the same for every
method), keeps the epoch with the best validation score, and reports the
primary metric of every task on the test split (mean over seeds), delta-m
against equal weights (``static``; mean relative difference over tasks,
paired by seed, positive is better) and the time per epoch relative to
``static`` (fastest of several epochs, measured round-robin in one
process), plus the one-off time to build the model and trace its compiled
epoch.

    python bench/weighting.py [--seeds 3] [--epochs 40] [--problems digits penguins] [--methods ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ARCHITECTURE = {"sharing": "hard", "trunk.depth": 2, "trunk.units": 128, "head.depth": 1, "head.units": 64,
                "dropout": 0.1, "l2": 0.0, "learning_rate": 1e-3, "batch_size": 64, "strategy": "joint"}
TEST_FRACTION = VALID_FRACTION = 0.2


@dataclass
class Problem:
    name: str
    frame: Any
    make_plugins: Callable[[], tuple[list, list]]
    note: str = ""


@dataclass
class Outcome:
    metrics: dict[str, list[float]] = field(default_factory=dict)  # task -> test metric per seed
    epochs: list[int] = field(default_factory=list)


def table_from(frame: Any, source: str) -> Any:
    from automtl.data.table import Table

    cols = {}
    for name in frame.columns:
        s = frame[name]
        cols[name] = s.to_numpy() if s.dtype.kind in "fiub" else s.to_numpy(dtype=object, na_value=None)
    return Table(source, cols)


def digits_problem() -> Problem:
    import pandas as pd

    from automtl.data.demo import digits_demo

    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"automtl-bench-weighting-{os.getpid()}"
    frame = pd.read_csv(digits_demo(folder).parent / "digits.csv")

    def plugins() -> tuple[list, list]:
        from automtl_classification import ClassificationTask
        from automtl_regression import RegressionTask
        from automtl_tabular import TabularInput

        return ([TabularInput("pixels", {"numeric": ["px*"]})],
                [ClassificationTask("digit", {"target": "digit"}), RegressionTask("slant", {"target": "slant"})])

    return Problem("digits", frame, plugins, "digit (accuracy) + slant (RMSE); losses of similar scale")


def penguins_problem() -> Problem:
    try:
        from palmerpenguins import load_penguins
    except ImportError:
        sys.exit("the penguins problem needs palmerpenguins: pip install 'automtl[bench]'")
    frame = load_penguins().dropna(subset=["body_mass_g"]).reset_index(drop=True)

    def plugins() -> tuple[list, list]:
        from automtl_classification import ClassificationTask
        from automtl_regression import RegressionTask
        from automtl_tabular import TabularInput

        class LossInUnits(RegressionTask):
            """Squared error in the target's own units (grams squared), the scale a non-standardising task has."""

            def loss(self, y_true: Any, y_pred: Any) -> Any:
                return super().loss(y_true, y_pred) * float(self.std[0] ** 2)

        encoder = TabularInput("penguin", {"numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
                                           "categorical": ["island"]})
        return [encoder], [ClassificationTask("species", {"target": "species"}),
                           ClassificationTask("sex", {"target": "sex"}),
                           LossInUnits("mass", {"target": "body_mass_g"})]

    return Problem("penguins", frame, plugins,
                   "species, sex (accuracy) + body mass (RMSE, g) with its loss in grams^2 (~1e6 x the others)")


PROBLEMS = {"digits": digits_problem, "penguins": penguins_problem}


def splits(problem: Problem, seed: int) -> tuple[list, list, Any, Any, Any]:
    """Fresh plugins fitted on this seed's training split; arrays of train, validation and test."""
    from automtl.data.arrays import to_arrays

    n = len(problem.frame)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = int(n * TEST_FRACTION), int(n * VALID_FRACTION)
    parts = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}
    tables = {k: table_from(problem.frame.iloc[np.sort(ix)].reset_index(drop=True), f"{problem.name}-{k}")
              for k, ix in parts.items()}
    encoders, tasks = problem.make_plugins()
    for plugin in (*encoders, *tasks):
        plugin.prepare(tables["train"])
    return (encoders, tasks, *(to_arrays(encoders, tasks, tables[k]) for k in ("train", "valid", "test")))


def trainer_for(method: str, encoders: list, tasks: list, train: Any, valid: Any, seed: int) -> Any:
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    keras.utils.set_random_seed(seed)
    params = TrialParams({**ARCHITECTURE, "weighting": method})
    assembled = build_model(encoders, tasks, params)
    return Trainer(assembled, tasks, params, train, valid, {t.name: 1.0 for t in tasks}, seed=seed, encoders=encoders)


def test_metrics(trainer: Any, tasks: list, test: Any) -> dict[str, float]:
    from automtl.training.trainer import to_tensors

    pred = trainer.predict(to_tensors(test.x), len(test))
    return {t.name: float(t.evaluate(test.y[t.name], test.mask[t.name], pred[t.name].astype(np.float64))[t.primary_metric])
            for t in tasks}


def quality(problem: Problem, methods: list[str], seeds: int, epochs: int, patience: int) -> dict[str, Outcome]:
    import keras

    out = {m: Outcome() for m in methods}
    for seed in range(seeds):
        encoders, tasks, train, valid, test = splits(problem, seed)
        for m in methods:
            keras.backend.clear_session(free_memory=True)
            trainer = trainer_for(m, encoders, tasks, train, valid, seed)
            fit = trainer.fit(epochs, patience)
            for task, value in test_metrics(trainer, tasks, test).items():
                out[m].metrics.setdefault(task, []).append(value)
            out[m].epochs.append(fit.best_epoch)
            print(f"  {problem.name} seed {seed} {m:<12}" + "  ".join(
                f"{k} {v[-1]:.4g}" for k, v in out[m].metrics.items()), flush=True)
    return out


def timing(problem: Problem, methods: list[str], rounds: int) -> dict[str, tuple[float, float]]:
    """Per method: (seconds per epoch, seconds to build and trace the compiled epoch), round-robin.

    The epoch time is the fastest of the rounds: on a machine shared with other work the fastest epoch is the
    one least disturbed, and round-robin order gives every method the same chances.
    """
    import keras

    keras.backend.clear_session(free_memory=True)
    encoders, tasks, train, valid, _ = splits(problem, 0)
    trainers, trace = {}, {}
    for m in methods:
        start = time.perf_counter()
        trainers[m] = trainer_for(m, encoders, tasks, train, valid, 0)
        trainers[m]._epoch_fn().numpy()
        trace[m] = time.perf_counter() - start
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            start = time.perf_counter()
            trainers[m]._epoch_fn().numpy()
            times[m].append(time.perf_counter() - start)
    return {m: (float(np.min(times[m])), trace[m]) for m in methods}


def delta_m(outcome: Outcome, base: Outcome, directions: dict[str, str]) -> tuple[float, float]:
    """Mean relative difference over tasks (positive: better than ``base``), per seed; mean and standard error."""
    per_seed = []
    for s in range(len(base.epochs)):
        rel = [(1 if directions[t] == "maximize" else -1) * (outcome.metrics[t][s] - base.metrics[t][s])
               / abs(base.metrics[t][s]) for t in directions]
        per_seed.append(100 * float(np.mean(rel)))
    err = float(np.std(per_seed, ddof=1) / np.sqrt(len(per_seed))) if len(per_seed) > 1 else float("nan")
    return float(np.mean(per_seed)), err


def main() -> None:
    from automtl.core import registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--methods", nargs="+", default=None, help="default: every installed weighting method")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=15, help="timed epochs per method (round-robin)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    methods = args.methods or registry.names("weighting")
    methods = ["static"] + [m for m in methods if m != "static"]
    arch = ", ".join(f"{k} {v}" for k, v in ARCHITECTURE.items())
    print(f"architecture: {arch}; {args.epochs} epochs (patience {args.patience}), {args.seeds} seeds; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    report: dict[str, Any] = {}
    for name in args.problems:
        problem = PROBLEMS[name]()
        print(f"\n== {name}: {problem.note}")
        results = quality(problem, methods, args.seeds, args.epochs, args.patience)
        speed = timing(problem, methods, args.rounds)
        _, tasks = problem.make_plugins()
        directions = {t.name: t.direction for t in tasks}
        heads = [f"{t.name} {t.primary_metric}" for t in tasks]
        print(f"\n{'method':<12}" + "".join(f"{h:>22}" for h in heads) + f"{'delta-m %':>16}{'epoch x':>9}{'trace s':>9}")
        rows = {}
        for m in methods:
            r = results[m]
            dm, err = delta_m(r, results["static"], directions)
            ratio = speed[m][0] / speed["static"][0]
            cells = "".join(f"{np.mean(r.metrics[t]):>13.4f} ±{np.std(r.metrics[t]):<7.4f}" for t in directions)
            print(f"{m:<12}{cells}{dm:>+9.2f} ±{err:<5.2f}{ratio:>9.2f}{speed[m][1]:>9.2f}")
            rows[m] = {"metrics": r.metrics, "delta_m": dm, "delta_m_se": err, "epoch_s": speed[m][0],
                       "epoch_ratio": ratio, "trace_s": speed[m][1], "best_epochs": r.epochs}
        report[name] = rows
    print(f"\nload average at end {os.getloadavg()[0]:.1f}: times are only comparable within one run")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
