"""Memory across many trials: RSS after trial 5 and after the last trial.

Runs short trials (parameters sampled from the default space) two ways, as a
search can: all in one process (``trials_per_process: 0``), and in automtl's
recycled worker process (the default, replaced every ``--recycle`` trials),
where the figure is the search process plus its live worker.

    python bench/trial_memory.py [--trials 100] [--epochs 2] [--recycle 25]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_experiment  # noqa: E402

from automtl.space import ChoiceParam, FloatParam, IntParam, builtin_spaces, load_space  # noqa: E402


def rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


@dataclass
class Handle:
    number: int
    params: dict = field(default_factory=dict)

    def report(self, epoch: int, value: float) -> None:
        pass


def run(mode: str, trials: int, epochs: int, recycle: int) -> float:
    exp = demo_experiment({"epochs": epochs, "patience": None, "trials_per_process": recycle if mode == "worker" else 0})
    space_path = next(p for p in builtin_spaces() if p.stem == "default")
    space = load_space(space_path, [t.name for t in exp.tasks])
    rng = random.Random(0)

    def pick(p):
        if isinstance(p, ChoiceParam):
            return rng.choice(p.values)
        if isinstance(p, IntParam):
            return rng.randint(p.low, p.high)
        assert isinstance(p, FloatParam)
        return rng.uniform(p.low, p.high)

    if mode == "worker":
        from automtl.run.trial_process import ProcessTrialRunner

        runner = ProcessTrialRunner(exp, exp.run_dir, recycle)
        measure = lambda: rss_mb() + rss_mb(runner.pids[-1])  # noqa: E731
    else:
        from automtl.data.prepare import instantiate, prepare
        from automtl.training.runner import TrialRunner

        runner = TrialRunner(prepare(exp, *instantiate(exp)), exp.run_dir)
        measure = rss_mb
    marks = {}
    start = time.perf_counter()
    for n in range(1, trials + 1):
        runner(Handle(n, space.sample_with(pick)))
        if n in (1, 5, trials) or n % 25 == 0:
            marks[n] = measure()
            print(f"[{mode}] after trial {n:>4}: RSS {marks[n]:7.1f} MB ({time.perf_counter() - start:5.1f} s)", flush=True)
    if hasattr(runner, "close"):
        runner.close()
    growth = marks[trials] - marks[5]
    print(f"[{mode}] RSS after trial 5: {marks[5]:.1f} MB; after trial {trials}: {marks[trials]:.1f} MB; "
          f"growth {growth:+.1f} MB")
    return growth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--recycle", type=int, default=25, help="trials per worker process (the default of search.trials_per_process)")
    args = ap.parse_args()
    in_process = run("in-process", args.trials, args.epochs, args.recycle)
    worker = run("worker", args.trials, args.epochs, args.recycle)
    print(f"RSS growth from trial 5 to {args.trials}: in-process {in_process:+.1f} MB; "
          f"recycled worker (every {args.recycle} trials) {worker:+.1f} MB")


if __name__ == "__main__":
    main()
