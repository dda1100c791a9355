"""The small everyday commands against TensorFlow's bare import, measured side by side.

    python bench/predict_speed.py [--repeat 3] [--rows 16000] [--work DIR]

Builds one tiny table run (a few trials, an ensemble of up to 6 members), then
times, interleaved round by round so a busy moment hits every command alike:

- ``python -c "import tensorflow"`` (the floor every TensorFlow command pays);
- ``automtl predict RUN/best`` on 5 rows (target: under import + 2 s);
- ``automtl predict RUN/ensemble`` on ``--rows`` rows (target: under import + 4 s);
- a rerun of the finished search (nothing left to do; target: under 3 s, TensorFlow not imported);
- the first line of a new search (target: within 1 s of starting).

Prints the medians, each beside the bare import, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

SPACE = {"parameters": {"trunk.depth": {"choice": [1, 2]}, "trunk.units": {"choice": [16, 32, 64]},
                        "learning_rate": {"float": [1e-3, 1e-2], "log": True}, "batch_size": 64},
         "per_task": {"head.units": 8, "head.depth": 1}}


def table(n: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    city = rng.choice(["north", "south", "east", "west"], size=n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    frame["city"] = city
    frame["price"] = 50 + 10 * x[:, 0] - 5 * x[:, 1] + rng.normal(size=n)
    frame["kind"] = np.where(x[:, 2] + 0.5 * x[:, 3] > 0, "premium", "basic")
    return frame


def automtl(*args: str) -> list[str]:
    return [sys.executable, "-m", "automtl", *args]


def seconds(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def first_line(cmd: list[str], cwd: Path) -> float:
    """Seconds from starting ``cmd`` to its first line on stdout (the process is then stopped)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    took = time.perf_counter() - start
    proc.kill()
    proc.wait()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=16000)
    ap.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="automtl-predict-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    table(600).to_csv(work / "train.csv", index=False)
    table(5, seed=1).to_csv(work / "five.csv", index=False)
    table(args.rows, seed=2).to_csv(work / "many.csv", index=False)
    (work / "space.yaml").write_text(yaml.safe_dump(SPACE))
    exp = {"name": "speed", "data": {"train": "train.csv", "valid_fraction": 0.25},
           "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
           "tasks": [{"name": "price", "type": "regression", "target": "price"},
                     {"name": "kind", "type": "classification", "target": "kind"}],
           "space": "space.yaml",
           "search": {"trials": 8, "epochs": 4, "seed": 0, "out": "run", "ensemble": 6, "baselines": "off"}}
    (work / "experiment.yaml").write_text(yaml.safe_dump(exp))
    if not (work / "run" / "ensemble").is_dir():
        print("building the run (8 trials, an ensemble of up to 6) ...", flush=True)
        subprocess.run(automtl("search", "--config", "experiment.yaml", "-q"), cwd=work, check=True)
    import json

    members = len(json.loads((work / "run" / "ensemble" / "automtl.json").read_text())["ensemble"]["members"])
    new_exp = dict(exp, search=dict(exp["search"], out="run-new"))
    (work / "new.yaml").write_text(yaml.safe_dump(new_exp))
    cases = {
        "import tensorflow": lambda: seconds([sys.executable, "-c", "import tensorflow"], work),
        "predict best/, 5 rows": lambda: seconds(automtl("predict", "run/best", "--data", "five.csv", "--out",
                                                         "five.pred.csv"), work),
        f"predict ensemble/ ({members} members), {args.rows} rows": lambda: seconds(
            automtl("predict", "run/ensemble", "--data", "many.csv", "--out", "many.pred.csv"), work),
        "search rerun, nothing left": lambda: seconds(automtl("search", "--config", "experiment.yaml"), work),
        "search: first line": lambda: first_line(automtl("search", "--config", "new.yaml"), work),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, run in cases.items():
            samples[name].append(run())
    load = os.getloadavg()
    floor = statistics.median(samples["import tensorflow"])
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"(1 / 5 / 15 min); medians of {args.repeat}")
    print(f"{'command':<44}{'median s':>10}{'vs import':>12}  target")
    targets = {"predict best/, 5 rows": ("import + 2 s", floor + 2),
               f"predict ensemble/ ({members} members), {args.rows} rows": ("import + 4 s", floor + 4),
               "search rerun, nothing left": ("3 s", 3.0), "search: first line": ("1 s", 1.0)}
    for name, values in samples.items():
        m = statistics.median(values)
        goal = targets.get(name)
        verdict = f"{goal[0]}: {'met' if m <= goal[1] else 'MISSED'}" if goal else ""
        print(f"{name:<44}{m:>10.2f}{m - floor:>+12.2f}  {verdict}")


if __name__ == "__main__":
    main()
