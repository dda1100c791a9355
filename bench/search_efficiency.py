"""Search efficiency: TPE with median, Hyperband or no pruning, against random search.

Two small problems, each with a held-out test split made before any search:

- ``digits``: the digits demo (classify the digit, regress its slant; 1,797 rows);
- ``cancer``: scikit-learn's breast-cancer set (569 rows): classify the
  diagnosis and regress the "worst" radius, texture and concave points of
  the tumour from the mean and standard-error measurements; its experiment
  names no split, so automtl cross-validates its 455 training rows on 5
  folds (its default for a small table).

For every problem and seed, four searches of ``--trials`` trials run one after
another in this process (same space, epochs, patience and data split):
``tpe+median`` (the default), ``tpe+hyperband``, ``tpe`` without pruning and
``random`` without pruning (the baseline a practitioner would use). Printed
side by side, as means over the seeds:

- the best validation score (the search objective) after N trials and after
  T seconds of trial time (T: a quarter and a half of what random search
  spent on all its trials);
- the test-split metrics, per task, of the trial each search would export
  after 20 and after all trials (chosen by validation score, as the search
  does): the figures that do not flatter;
- how many trials TPE+median needed to reach random search's final best
  (the target: within 20).

    python bench/search_efficiency.py [--trials 50] [--epochs 15] [--seeds 0 1 2] [--problems digits cancer]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (quiet TensorFlow before it loads)

ARMS = {  # name: (algorithm, pruner); the baseline first, so a cut-short run still compares with it
    "random": ("random", "none"),
    "tpe+median": ("tpe", "median"),
    "tpe": ("tpe", "none"),
    "tpe+hyperband": ("tpe", "hyperband"),
}
TEST_FRACTION = 0.2


# -- problems ---------------------------------------------------------------------------------
def _split_test(frame, folder: Path, seed: int = 123) -> tuple[Path, Path]:
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = int(round(len(frame) * TEST_FRACTION))
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "train.csv", folder / "test.csv"
    frame.iloc[np.sort(order[n_test:])].to_csv(train, index=False)
    frame.iloc[np.sort(order[:n_test])].to_csv(test, index=False)
    return train, test


def digits_problem(folder: Path) -> tuple[dict, Path]:
    import pandas as pd
    import yaml

    from automtl.core.plugins import write_demo

    exp_path = write_demo("digits", folder / "demo")
    exp = yaml.safe_load(exp_path.read_text())
    train, test = _split_test(pd.read_csv(exp_path.parent / exp["data"]["train"]), folder)
    exp["data"]["train"] = str(train)
    return exp, test


def cancer_problem(folder: Path) -> tuple[dict, Path]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    train, test = _split_test(frame.drop(columns=["target"]), folder)
    exp = {
        "name": "cancer",
        # no split named: automtl's default, 5-fold cross-validation for these 455 training rows
        "data": {"train": str(train), "split_seed": 0},
        "inputs": [{"name": "measures", "type": "tabular", "numeric": ["mean_*", "*_error"]}],
        "tasks": [
            {"name": "diagnosis", "type": "classification", "target": "diagnosis"},
            {"name": "worst", "type": "regression", "target": ["worst_radius", "worst_texture", "worst_concave_points"]},
        ],
        "space": "default",
    }
    return exp, test


PROBLEMS = {"digits": digits_problem, "cancer": cancer_problem}


# -- one search -------------------------------------------------------------------------------
@dataclass
class Arm:
    """One search's trials in the order they ran: validation score (None: pruned/failed), seconds, test metrics."""

    scores: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    pruned: int = 0
    test: dict[int, dict[str, float]] = field(default_factory=dict)  # N -> the chosen trial's test metrics

    def best_after(self, n: int) -> float:
        done = [s for s in self.scores[:n] if s is not None]
        return max(done) if done else float("nan")

    def chosen(self, n: int) -> int | None:
        done = [(s, i) for i, s in enumerate(self.scores[:n]) if s is not None]
        return max(done)[1] if done else None

    def best_within(self, seconds: float) -> float:
        elapsed, best = 0.0, float("nan")
        for s, t in zip(self.scores, self.seconds):
            elapsed += t
            if elapsed > seconds:
                break
            if s is not None and not s <= best:
                best = s
        return best

    def trials_to_reach(self, target: float) -> int | None:
        for n in range(1, len(self.scores) + 1):
            if self.best_after(n) >= target - 1e-12:
                return n
        return None


def test_metrics(run_dir: Path, record, prepared, test_path: Path) -> dict[str, float]:
    """The trial's kept model (a cross-validated trial's trained on every row, as its export is) on the
    held-out test file: per-task primary metrics and the mean score."""
    import keras

    from automtl.data.arrays import to_arrays
    from automtl.data.readers import read_table
    from automtl.model import layers as _layers  # noqa: F401  (custom layers)
    from automtl.objective import combine
    from automtl.run.export_trial import trial_model

    model = keras.models.load_model(trial_model(run_dir, record, prepared), compile=False)
    arrays = to_arrays(prepared.encoders, prepared.tasks, read_table(test_path))
    pred = model.predict(arrays.x, verbose=0, batch_size=4096)
    out, scores = {}, {}
    for t in prepared.tasks:
        metrics = t.evaluate(arrays.y[t.name], arrays.mask[t.name], np.asarray(pred[t.name], dtype=np.float64))
        out[f"{t.name}.{t.primary_metric}"] = float(metrics[t.primary_metric])
        scores[t.name] = float(t.score(metrics))
    out["score"] = combine(scores, {t.name: 1.0 for t in prepared.tasks})
    return out


def run_arm(exp_raw: dict, test_path: Path, folder: Path, base: Path, algorithm: str, pruner: str, seed: int,
            trials: int, epochs: int, checkpoints: list[int]) -> Arm:
    from rich.console import Console

    from automtl.config import build_experiment
    from automtl.run.phases import prepare_search, run_trials
    from automtl.run.search import check_files, finish

    overrides = {"trials": trials, "epochs": epochs, "seed": seed, "algorithm": algorithm, "pruner": pruner,
                 "out": folder, "trials_per_process": 0, "backend": "optuna"}
    exp = build_experiment(exp_raw, "bench", base, overrides)
    search = prepare_search(check_files(exp), Console(quiet=True), quiet=True)
    run_trials(search)
    finish(search, False, None, report=False)
    arm = Arm()
    records = sorted(search.backend.records(), key=lambda r: r.number)
    for r in records:
        arm.scores.append(r.score if r.ok else None)
        arm.seconds.append(r.duration_s or 0.0)
        arm.pruned += r.state == "pruned"
    for n in checkpoints:
        chosen = arm.chosen(n)
        if chosen is not None:
            arm.test[n] = test_metrics(folder, records[chosen], search.prepared, test_path)
    return arm


# -- the table --------------------------------------------------------------------------------
def mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def report(results: dict, trials: int, seeds: list[int], early: int) -> str:
    lines = []
    for problem, by_arm in results.items():
        if not by_arm.get("random"):
            continue
        n_runs = len(by_arm["random"])
        by_arm = {n: runs[:n_runs] for n, runs in by_arm.items() if len(runs) >= n_runs}  # seeds every arm ran
        arms = list(by_arm)
        rnd = by_arm["random"]
        total = mean([sum(a.seconds) for a in rnd])
        t1, t2 = total / 4, total / 2
        metric_keys = [k for k in next(iter(rnd)).test.get(trials, {}) if k != "score"]
        lines.append(f"\n### {problem} ({n_runs} seed(s), {trials} trials per search; means over seeds)\n")
        head = (["search", "best@10", f"best@{early}", f"best@{trials}", f"best@{t1:.0f}s", f"best@{t2:.0f}s",
                 "trial time s", "pruned", f"test score@{early}", f"test score@{trials}"]
                + [f"test {k}@{trials}" for k in metric_keys])
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name in arms:
            runs = by_arm[name]
            cells = [name,
                     *(f"{mean([a.best_after(n) for a in runs]):.4f}" for n in (10, early, trials)),
                     *(f"{mean([a.best_within(t) for a in runs]):.4f}" for t in (t1, t2)),
                     f"{mean([sum(a.seconds) for a in runs]):.0f}",
                     f"{mean([a.pruned for a in runs]):.1f}",
                     f"{mean([a.test.get(early, {}).get('score') for a in runs]):.4f}",
                     f"{mean([a.test.get(trials, {}).get('score') for a in runs]):.4f}",
                     *(f"{mean([a.test.get(trials, {}).get(k) for a in runs]):.4g}" for k in metric_keys)]
            lines.append("| " + " | ".join(cells) + " |")
        for name in arms:
            if name == "random":
                continue
            needed = [a.trials_to_reach(r.best_after(trials)) for a, r in zip(by_arm[name], rnd)]
            within = sum(n is not None and n <= early for n in needed)
            lines.append(f"\n{name}: trials to reach random search's {trials}-trial best, per seed: "
                         + ", ".join(str(n) if n is not None else f">{trials}" for n in needed)
                         + f" ({within}/{len(needed)} seeds within {early})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--early", type=int, default=20, help="the N of 'reaches random search's best within N trials'")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--json", type=Path, help="write every trial's score and time here, after every search")
    ap.add_argument("--from-json", type=Path, help="print the table of an earlier (maybe cut-short) run's --json")
    ap.add_argument("--resume", action="store_true", help="keep the searches already in --json, run the rest")
    args = ap.parse_args()
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        results = {p: {n: [load_arm(a) for a in arms] for n, arms in by.items() if arms}
                   for p, by in doc["results"].items()}
        print(report(results, doc["trials"], doc["seeds"], doc["early"]))
        return
    if "random" not in args.arms:
        ap.error("--arms must include random (the baseline)")
    root = Path(tempfile.mkdtemp(prefix="automtl-efficiency-"))
    started = time.perf_counter()
    problems = {p: PROBLEMS[p](root / p) for p in args.problems}
    results: dict[str, dict[str, list[Arm]]] = {p: {name: [] for name in args.arms} for p in args.problems}
    if args.resume and args.json and args.json.exists():
        done = json.loads(args.json.read_text())["results"]
        for p, by in done.items():
            for n, arms in by.items():
                if p in results and n in results[p]:
                    results[p][n] = [load_arm(a) for a in arms]
    for k, seed in enumerate(args.seeds):  # arms interleaved per seed: a busy machine slows them alike
        for problem, (exp_raw, test_path) in problems.items():
            for name in args.arms:
                if len(results[problem][name]) > k:  # resumed
                    continue
                algorithm, pruner = ARMS[name]
                t0 = time.perf_counter()
                arm = run_arm(exp_raw, test_path, root / problem / f"{name}-{seed}", root / problem, algorithm,
                              pruner, seed, args.trials, args.epochs, sorted({args.early, args.trials}))
                results[problem][name].append(arm)
                print(f"{problem} seed {seed} {name}: best {arm.best_after(args.trials):.4f} "
                      f"(@{args.early}: {arm.best_after(args.early):.4f}), {arm.pruned} pruned, "
                      f"{time.perf_counter() - t0:.0f}s wall", flush=True)
                if args.json:
                    args.json.write_text(json.dumps(
                        {"trials": args.trials, "early": args.early, "epochs": args.epochs, "seeds": args.seeds,
                         "results": {p: {n: [a.__dict__ for a in arms] for n, arms in by.items()}
                                     for p, by in results.items()}}, default=str))
    print(report(results, args.trials, args.seeds, args.early))
    print(f"\ntotal {time.perf_counter() - started:.0f}s wall; epochs {args.epochs}, patience 8, space 'default'")


def load_arm(doc: dict) -> Arm:
    return Arm(doc["scores"], doc["seconds"], doc["pruned"], {int(k): v for k, v in doc["test"].items()})


if __name__ == "__main__":
    main()
