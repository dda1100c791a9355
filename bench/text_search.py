"""How many trials a time-boxed text search completes on this machine.

Writes the text demo's generated assistant requests (``--rows`` training rows,
short texts; an intent task labelled on every row and the slot-tagging task)
and runs one search of ``--timeout`` seconds with ``--space`` (default
``auto``: the conv and transformer encoders). The issue-18 target: a
10-minute search on 10,000 short texts completes at least 8 trials on 2 cores.
The last line: ``text search: N trials finished in S s (C complete, P pruned)``.

    python bench/text_search.py [--rows 10000] [--timeout 600] [--epochs 10] [--space auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--space", default="auto")
    ap.add_argument("--tagging", action="store_true", help="keep the slot-tagging task (default: intent only)")
    args = ap.parse_args()
    from rich.console import Console

    from automtl.config import load_experiment
    from automtl.run.search import run_search
    from automtl_text.demo import text_demo

    folder = Path(tempfile.mkdtemp(prefix="automtl-text-search-"))
    path = text_demo(folder, n_train=args.rows, n_valid=max(500, args.rows // 5))
    exp = load_experiment(path, {"out": folder / "run", "space": args.space, "trials": 1000,
                                 "timeout": args.timeout, "epochs": args.epochs})
    if not args.tagging:
        exp = exp.model_copy(update={"tasks": [t for t in exp.tasks if t.type == "classification"]})
    print(f"text demo: {args.rows} training texts, tasks {', '.join(t.name for t in exp.tasks)}; space "
          f"'{args.space}', {args.timeout:.0f} s, up to {args.epochs} epochs per trial; {os.cpu_count()} CPU cores",
          flush=True)
    started = time.perf_counter()
    summary = run_search(exp, console=Console(quiet=True), quiet=True, report=False)
    took = time.perf_counter() - started
    states = [r.state for r in summary.records]
    for r in summary.records:
        enc = r.params.get("text.encoder", "?")
        print(f"  trial {r.number}: {r.state:<9} {enc:<12} score {r.score if r.score is not None else float('nan'):.4f}"
              f"  {r.duration_s or 0.0:6.1f} s")
    finished = sum(s in ("complete", "pruned") for s in states)
    print(f"text search: {finished} trials finished in {took:.0f} s ({states.count('complete')} complete, "
          f"{states.count('pruned')} pruned, {states.count('fail')} failed)")


if __name__ == "__main__":
    sys.exit(main())
