"""Does sharing help? Best multi-task model vs single-task models on the digits demo.

Runs the same short search (same space, trials, epochs and seed) once with
both tasks and once per task alone, then prints each task's primary
validation metric for both and delta-m, the mean relative difference used
in the multi-task literature (positive: the multi-task model is better).

    python bench/mtl_quality.py [--trials 10] [--epochs 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_experiment  # noqa: E402

from rich.console import Console  # noqa: E402

from automtl.run.search import run_search  # noqa: E402


def best_metrics(exp) -> dict[str, float]:
    summary = run_search(exp, console=Console(quiet=True), quiet=True, report=False)
    assert summary.best is not None, "no trial completed"
    return summary.best.metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--space", default="default")
    args = ap.parse_args()
    settings = {"trials": args.trials, "epochs": args.epochs, "space": args.space, "trials_per_process": 0}
    root = Path(tempfile.mkdtemp(prefix="automtl-quality-"))
    multi = demo_experiment(settings, root / "multi")
    primaries = {"digit": ("accuracy", "maximize"), "slant": ("rmse", "minimize")}
    print(f"digits demo, space '{args.space}', {args.trials} trials x {args.epochs} epochs per search")
    mtl = best_metrics(multi)
    rows, deltas = [], []
    for task, (metric, direction) in primaries.items():
        single = demo_experiment(settings, root / f"single-{task}")
        single = single.model_copy(update={"tasks": [t for t in single.tasks if t.name == task], "name": f"single-{task}"})
        st = best_metrics(single)[f"{task}.{metric}"]
        mt = mtl[f"{task}.{metric}"]
        sign = 1.0 if direction == "maximize" else -1.0
        deltas.append(sign * (mt - st) / abs(st) * 100)
        rows.append((task, metric, st, mt, deltas[-1]))
    print(f"{'task':<8}{'metric':<10}{'single-task':>12}{'multi-task':>12}{'delta %':>9}")
    for task, metric, st, mt, d in rows:
        print(f"{task:<8}{metric:<10}{st:>12.4f}{mt:>12.4f}{d:>+9.2f}")
    print(f"delta-m: {sum(deltas) / len(deltas):+.2f}% (positive: the multi-task model is better)")


if __name__ == "__main__":
    main()
