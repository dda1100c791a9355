"""A table larger than memory: a 5-million-row, two-task Parquet table searched streamed, against in-memory.

Generates the table as Parquet files (written chunk by chunk: the generator
never holds it), then runs one real trial of ``automtl search`` two ways, each
in its own process, side by side:

- streamed: every row, ``data.stream: true`` (hash split, encodings fitted on
  ``data.sample_rows``, rows encoded once into the run's cache and read by
  ``tf.data`` every epoch);
- in memory: the first ``--memory-rows`` rows (one Parquet file), held in memory
  as today.

It prints each one's peak RSS (the search process's ``ru_maxrss``: TensorFlow,
the cache pages it touched, everything), its training rows per second (rows x
epochs / training seconds, from the trial's cost record), its wall time and
the streamed run's one-time preparation. Targets: streamed peak RSS under
2 GB; streamed rows/s at least half the in-memory ones.

    python bench/big_table.py                    # 5,000,000 rows vs 500,000 in memory
    python bench/big_table.py --rows 200000 --memory-rows 20000 --epochs 1    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

#: A fixed model, so both runs train the same network: a shared trunk, one head per task.
SPACE = {
    "parameters": {"trunk.depth": 2, "trunk.units": 64, "strategy": "joint", "learning_rate": 1e-3,
                   "batch_size": 1024},
    "per_task": {"head.units": 32, "head.depth": 1, "loss_weight": 1.0},
}
NUMERIC, CATEGORIES = 8, {"site": 20, "device": 200, "campaign": 2000}


def generate(folder: Path, rows: int, files: int, seed: int = 0) -> None:
    """A click-through-like table: 8 numbers, 3 categories, a click (class) and a value (regression) per row."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=NUMERIC)
    effects = {c: rng.normal(scale=0.7, size=k) for c, k in CATEGORIES.items()}
    per = -(-rows // files)
    for f in range(files):
        n = min(per, rows - f * per)
        if n <= 0:
            break
        x = rng.normal(size=(n, NUMERIC)).astype(np.float32)
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(NUMERIC)])
        logit = x @ weights * 0.5
        for c, k in CATEGORIES.items():
            ids = rng.zipf(1.3, size=n) % k
            frame[c] = np.char.add(f"{c}_", ids.astype(str))
            logit += effects[c][ids]
        click = rng.random(n) < 1 / (1 + np.exp(-logit))
        frame["click"] = np.where(click, "yes", "no")
        frame["value"] = (2.0 * logit + rng.normal(size=n)).astype(np.float32)
        frame.to_parquet(folder / f"part-{f:03d}.parquet", index=False)


def experiment(folder: Path, train: str, stream: bool, sample_rows: int) -> Path:
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    exp = {
        "name": "big",
        "data": {"train": train, "valid_fraction": 0.1, "stream": stream, "sample_rows": sample_rows},
        "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"], "categorical": list(CATEGORIES)}],
        "tasks": [{"name": "click", "type": "classification", "target": "click"},
                  {"name": "value", "type": "regression", "target": "value"}],
        "space": "space.yaml",
        "search": {"trials": 1, "seed": 0, "trials_per_process": 0, "pruner": "none", "baselines": "off",
                   "ensemble": 0, "refit": False},
    }
    path = folder / f"{'stream' if stream else 'memory'}.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def run(config: Path, out: Path, epochs: int) -> dict:
    """One search in its own process; its peak RSS from the kernel's accounting of that process."""
    if (out / "automtl-run.json").is_file():  # this script's run folder from an earlier run (--keep): a new trial
        shutil.rmtree(out)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--out",
                             str(out), "--epochs", str(epochs), "--no-report", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - started
    if status != 0:
        raise SystemExit(f"search {config.name} failed:\n{output}")
    trials = json.loads((out / "trials.json").read_text())
    trial = (trials["trials"] if isinstance(trials, dict) else trials)[0]
    cost = trial["cost"]
    manifest = json.loads((out / "best" / "automtl.json").read_text())
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "trial_s": trial["duration_s"],
            "train_s": cost["train_seconds"], "rows": cost["rows"], "epochs": cost["epochs"],
            "rows_per_s": cost["rows"] * cost["epochs"] / cost["train_seconds"], "score": trial["score"],
            "stream": manifest["data"].get("stream")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--memory-rows", type=int, default=500_000, help="rows of the in-memory run (the first file)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="generate into (and keep) this folder instead of a temporary one")
    args = parser.parse_args()
    files = max(1, args.rows // args.memory_rows)
    with tempfile.TemporaryDirectory(prefix="automtl-big-") as tmp_name:
        root = args.keep or Path(tmp_name)
        data = root / "table"
        started = time.time()
        if not data.is_dir():
            generate(data, args.rows, files)
        size = sum(p.stat().st_size for p in data.glob("*.parquet"))
        print(f"table: {args.rows:,} rows in {files} Parquet files ({size / 2**20:.0f} MiB), generated in "
              f"{time.time() - started:.0f} s", flush=True)
        memory = run(experiment(root, str(data / "part-000.parquet"), False, args.sample_rows), root / "run-memory",
                     args.epochs)
        print(f"in memory: {memory}", flush=True)
        streamed = run(experiment(root, str(data), True, args.sample_rows), root / "run-stream", args.epochs)
        print(f"streamed:  {streamed}", flush=True)
    print("\n| run | rows | peak RSS (MB) | rows/s (training) | trial (s) | command (s) | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r, n in (("in memory", memory, args.memory_rows), ("streamed", streamed, args.rows)):
        print(f"| {name} | {n:,} | {r['peak_rss_mb']:.0f} | {r['rows_per_s']:,.0f} | {r['trial_s']:.0f} | "
              f"{r['wall_s']:.0f} | {r['score']:.4f} |")
    ratio = streamed["rows_per_s"] / memory["rows_per_s"]
    print(f"\nstreamed / in-memory rows per second: {ratio:.2f} (target >= 0.5); streamed peak RSS "
          f"{streamed['peak_rss_mb']:.0f} MB (target < 2048); sample {streamed['stream']['sample_rows']:,} rows, "
          f"split {streamed['stream']['rows']}")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (at the end)")


if __name__ == "__main__":
    main()
