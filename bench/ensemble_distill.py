"""Best single trial vs ensemble vs distilled student, on a held-out test split, side by side in one run.

Two problems: the digits demo (classify the digit, regress its slant; 1,797
images from scikit-learn) and the Palmer penguins (species and sex
classification, body mass regression; 344 birds, sex missing for 11, from the
``palmerpenguins`` package: ``pip install -e '.[bench]'``). For each problem
and seed, a seeded 20 % test split is set aside; automtl searches on the rest
(its own validation split inside), builds the ensemble (``--ensemble``), and
``automtl distill`` teaches a student (the best trial's architecture, from its
weights at a tenth of its learning rate, MixUp transfer rows) from it.
The three exported SavedModels then serve the test rows:

- per-task test metrics (accuracy; RMSE), and the objective: the mean of the
  tasks' scores (accuracy; skill = 1 - RMSE / std of the training target), as
  the search ranks trials;
- parameters, and serving latency at batch 1 and 256 (median ms per call of
  ``serving_default``, the three models timed in turn, round after round).

    python bench/ensemble_distill.py [--problems digits,penguins] [--seeds 3] [--trials 30] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402


def digits_frame() -> tuple[pd.DataFrame, dict]:
    from sklearn.datasets import load_digits

    from automtl.data.demo import digit_slant

    d = load_digits()
    frame = pd.DataFrame(d.data.astype(np.float32), columns=[f"px{i}" for i in range(64)])
    frame["digit"] = d.target
    frame["slant"] = np.round(digit_slant(d.images), 5)
    spec = {"inputs": [{"name": "pixels", "type": "tabular", "numeric": ["px*"]}],
            "tasks": [{"name": "digit", "type": "classification", "target": "digit"},
                      {"name": "slant", "type": "regression", "target": "slant"}]}
    return frame, spec


def penguins_frame() -> tuple[pd.DataFrame, dict]:
    from palmerpenguins import load_penguins

    frame = load_penguins().drop(columns=["year"])
    frame = frame[frame["body_mass_g"].notna()].reset_index(drop=True)
    spec = {"inputs": [{"name": "features", "type": "tabular",
                        "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
                        "categorical": ["island"]}],
            "tasks": [{"name": "species", "type": "classification", "target": "species"},
                      {"name": "sex", "type": "classification", "target": "sex"},
                      {"name": "body_mass", "type": "regression", "target": "body_mass_g"}]}
    return frame, spec


PROBLEMS = {"digits": digits_frame, "penguins": penguins_frame}


def test_metrics(model_dir: Path, test: pd.DataFrame, spec: dict) -> dict[str, float]:
    """Per-task test metrics of an exported model, from its served outputs; ``objective`` as the search scores."""
    from automtl.export.predict import load_manifest, model_inputs, run_model

    manifest = load_manifest(model_dir)
    data = {str(c): test[c].to_numpy() for c in test.columns}
    out = run_model(model_dir, model_inputs(manifest, data, "test"), len(test), 1024)
    described = {t["name"]: t for t in manifest["tasks"]}
    metrics, scores = {}, []
    for task in spec["tasks"]:
        name, col = task["name"], task["target"]
        truth = test[col]
        known = truth.notna().to_numpy()
        if task["type"] == "classification":
            pred = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in out[f"{name}.label"]])
            acc = float((pred[known] == truth[known].astype(str).to_numpy()).mean())
            metrics[f"{name}.accuracy"] = acc
            scores.append(acc)
        else:
            err = out[f"{name}.value"][known] - truth[known].to_numpy(np.float64)
            rmse = float(np.sqrt(np.mean(err**2)))
            metrics[f"{name}.rmse"] = rmse
            scores.append(1.0 - rmse / float(described[name]["std"][0]))
    metrics["objective"] = float(np.mean(scores))
    return metrics


def one_run(problem: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    import keras
    from rich.console import Console

    import automtl.model.layers  # noqa: F401  (custom layers, to count a model's parameters)
    from automtl.config import build_experiment
    from automtl.run.distill import distill, serving_latency
    from automtl.run.search import run_search

    frame, spec = PROBLEMS[problem]()
    rng = np.random.default_rng(1000 + seed)
    order = rng.permutation(len(frame))
    n_test = int(round(0.2 * len(frame)))
    test, dev = frame.iloc[order[:n_test]].reset_index(drop=True), frame.iloc[order[n_test:]].reset_index(drop=True)
    folder = root / f"{problem}-{seed}"
    folder.mkdir(parents=True)
    dev.to_csv(folder / "dev.csv", index=False)
    raw = {"name": problem, "data": {"train": "dev.csv", "valid_fraction": 0.2, "split_seed": seed}, **spec,
           "space": args.space,
           "search": {"trials": args.trials, "epochs": args.epochs, "patience": 8, "seed": seed,
                      "trials_per_process": 0, "ensemble": args.ensemble, "baselines": "off", "out": str(folder / "run")}}
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    exp = build_experiment(raw, str(folder / "experiment.yaml"), folder)
    started = time.perf_counter()
    summary = run_search(exp, console=Console(quiet=True), quiet=True, report=False)
    search_s = time.perf_counter() - started
    run = folder / "run"
    if not (run / "ensemble" / "automtl.json").exists():
        raise RuntimeError(f"{problem} seed {seed}: no ensemble was exported: {summary.notes}")
    started = time.perf_counter()
    result = distill(run, folder / "student", teacher="ensemble", student=args.student, temperature=args.temperature,
                     init=args.init, mixup=args.mixup, finetune_lr=args.finetune_lr)
    distill_s = time.perf_counter() - started
    models = {"best": run / "best", "ensemble": run / "ensemble", "student": folder / "student"}
    latency = serving_latency(models, {k: v for k, v in _rows(run, test).items()})
    row = {"problem": problem, "seed": seed, "search_s": round(search_s, 1), "distill_s": round(distill_s, 1),
           "ensemble_members": [m["trial"] for m in summary.ensemble.members] if summary.ensemble else [],
           "valid": {"best": summary.best.score, "ensemble": summary.ensemble.score if summary.ensemble else None,
                     "student": result.student.score}}
    for name, path in models.items():
        manifest = json.loads((path / "automtl.json").read_text())
        params = manifest.get("parameters") or keras.saving.load_model(path / "model.keras").count_params()
        row[name] = {**test_metrics(path, test, spec), "parameters": int(params),
                     **{f"latency_{k}": v for k, v in latency[name].items()}}
    return row


def _rows(run: Path, test: pd.DataFrame) -> dict[str, np.ndarray]:
    from automtl.export.predict import load_manifest, model_inputs

    data = {str(c): test[c].to_numpy() for c in test.columns}
    return model_inputs(load_manifest(run / "best"), data, "test")


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def report(rows: list[dict]) -> None:
    for problem in dict.fromkeys(r["problem"] for r in rows):
        runs = [r for r in rows if r["problem"] == problem]
        keys = [k for k in runs[0]["best"] if not k.startswith("latency") and k != "parameters"]
        print(f"\n{problem}: {len(runs)} seed(s), test split (mean ± sd over seeds)")
        header = f"{'model':<10}" + "".join(f"{k:>22}" for k in keys) + f"{'parameters':>12}{'ms @1':>8}{'ms @256':>9}"
        print(header)
        for model in ("best", "ensemble", "student"):
            cells = "".join(f"{_mean_sd([r[model][k] for r in runs]):>22}" for k in keys)
            params = statistics.mean(r[model]["parameters"] or 0 for r in runs)
            l1 = statistics.mean(r[model]["latency_batch_1"] for r in runs)
            l256 = statistics.mean(r[model]["latency_batch_256"] for r in runs)
            print(f"{model:<10}{cells}{params:>12,.0f}{l1:>8.2f}{l256:>9.2f}")
        gains = [r["ensemble"]["objective"] - r["best"]["objective"] for r in runs]
        gaps = [(r["student"]["objective"] - r["ensemble"]["objective"]) / abs(r["ensemble"]["objective"]) * 100
                for r in runs]
        lat = [r["student"]["latency_batch_1"] / r["best"]["latency_batch_1"] for r in runs]
        print(f"ensemble - best (test objective): {', '.join(f'{g:+.4f}' for g in gains)}; "
              f"better in {sum(g > 0 for g in gains)}/{len(gains)} seeds")
        print(f"student vs ensemble (test objective, %): {', '.join(f'{g:+.2f}' for g in gaps)}; "
              f"student / best latency at batch 1: {', '.join(f'{x:.2f}' for x in lat)}")
        print("validation objective (best / ensemble / student): "
              + "; ".join(f"{r['valid']['best']:.4f} / {r['valid']['ensemble']:.4f} / {r['valid']['student']:.4f}"
                          for r in runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="digits,penguins")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--space", default="default")
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--student", default="best")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--init", default="trial", help="the student starts from the best trial's weights, or scratch")
    ap.add_argument("--mixup", type=float, default=4.0, help="MixUp transfer rows per training row (0: none)")
    ap.add_argument("--finetune-lr", type=float, default=None,
                    help="a student from trial weights trains at this share of the trial's learning rate (default 0.1)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
    ap.add_argument("--merge", type=Path, nargs="*", default=[], help="earlier --json files to report with these runs")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="automtl-ens-"))
    rows = [row for f in args.merge for row in json.loads(f.read_text())]
    for problem in args.problems.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            print(f"{problem} seed {seed} ...", flush=True, file=sys.stderr)
            rows.append(one_run(problem, seed, args, root))
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print(f"{args.trials} trials x up to {args.epochs} epochs per search, space '{args.space}', ensemble size "
          f"{args.ensemble}, student '{args.student}' (init {args.init}, temperature {args.temperature:g}, mixup {args.mixup:g}, "
          f"fine-tuning rate x{0.1 if args.finetune_lr is None else args.finetune_lr:g}); "
          "2-core CPU, shared")
    report(rows)


if __name__ == "__main__":
    main()
