"""How fast every bad input of the test set is refused, each as a fresh ``automtl`` process, idle and under load.

    python bench/bad_input_speed.py [--repeat 1] [--slowest 10] [--load 4] [--cases SUBSTRING]

Runs every case of ``tests/bad_input_cases.py`` (the table the tests use) as
``python -m automtl ...`` in a new interpreter, as a user would, twice: on
the machine as it is ("idle": only as idle as the machine is; on a shared
machine other jobs run too, so the load average is printed with it), then
with ``--load`` extra processes each spinning a CPU core. Prints per column
the median and maximum wall time of a refusal, the slowest cases side by
side, and a bare ``python -c pass`` and ``automtl --help`` measured in the
same rounds (the floor any command pays). Each refusal is also checked: its
exit code, its message fragments, and that TensorFlow was never imported.
Targets (issue 31): idle, median under 1 s and none over 3 s; under a load
of 4, none over 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bad_input_cases import CASES, Workspace, arguments, gpu_seen  # noqa: E402

IDLE_MEDIAN_S, IDLE_MAX_S, LOADED_MAX_S = 1.0, 3.0, 10.0
#: Runs the CLI and says on stderr whether TensorFlow got imported on the way to the refusal.
WRAPPER = (
    "import sys\n"
    "from automtl.cli import cli\n"
    "try:\n"
    "    cli(sys.argv[1:], prog_name='automtl')\n"
    "finally:\n"
    "    sys.stderr.write('\\nTF_LOADED\\n' if 'tensorflow' in sys.modules else '')\n"
)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system, the process and its children) and the result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPU(s)"


@dataclass
class Column:
    """One pass over the cases: wall and CPU seconds per case, the floor, and the refusals that went wrong."""

    name: str
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    floor: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)

    def median(self, case: str) -> float:
        return statistics.median(self.wall[case])


def measure(name: str, cases: list, workspace: Workspace, root: Path, env: dict[str, str], repeat: int) -> Column:
    col = Column(name, {c.id: [] for c in cases}, {c.id: [] for c in cases},
                 {"python -c pass": [], "automtl --help": []})
    col.loads.append(load())
    for _ in range(repeat):
        # interleaved: a busy moment of the machine hits the floor and the cases alike
        col.floor["python -c pass"].append(timed([sys.executable, "-c", "pass"], root, env)[0])
        col.floor["automtl --help"].append(timed([sys.executable, "-m", "automtl", "--help"], root, env)[0])
        for case in cases:
            seconds, cpu_seconds, proc = timed([sys.executable, "-c", WRAPPER, *arguments(case, workspace)], root, env)
            col.wall[case.id].append(seconds)
            col.cpu[case.id].append(cpu_seconds)
            output = proc.stdout + proc.stderr
            missing = [f for f in case.fragments if f not in output]
            if proc.returncode != case.code or missing or "Traceback" in output or "TF_LOADED" in output:
                col.problems.append(f"{name}: {case.id}: exit {proc.returncode}, missing {missing}, "
                                    f"{'TensorFlow loaded, ' if 'TF_LOADED' in output else ''}output {output[-300:]!r}")
    col.loads.append(load())
    return col


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy loops, each keeping a CPU core busy, for the duration."""
    spin = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(processes)]
    try:
        time.sleep(2.0)  # let the load average see them
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (the median counts)")
    ap.add_argument("--slowest", type=int, default=10, help="list this many of the slowest cases")
    ap.add_argument("--load", type=int, default=4, help="busy processes of the loaded column (0: idle only)")
    ap.add_argument("--cases", default="", help="only the cases whose id holds this text")
    args = ap.parse_args()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = Path(tempfile.mkdtemp(prefix="automtl-bad-input-"))
    workspace = Workspace(root)
    gpu = gpu_seen()
    cases = [c for c in CASES if (not c.needs or _installed(c.needs)) and not (c.no_gpu and gpu)
             and args.cases in c.id]
    print(f"{len(cases)} bad inputs, each a fresh process; {load()} at the start. The machine may be shared: "
          "'idle' is only as idle as it is (its load average is printed with each column)")
    columns = [measure("idle", cases, workspace, root, env, args.repeat)]
    if args.load:
        with cpu_load(args.load):
            columns.append(measure(f"load {args.load}", cases, workspace, root, env, args.repeat))
    for col in columns:
        print(f"{col.name}: {col.loads[0]} at its start, {col.loads[-1]} at its end")
    head = "".join(f"{col.name + ' wall s':>16}" for col in columns)
    print(f"{'':<40}{head}")
    for what in ("python -c pass", "automtl --help"):
        print(f"{what + ' (median)':<40}" + "".join(f"{statistics.median(col.floor[what]):>16.2f}" for col in columns))
    for label, pick in (("median refusal", statistics.median), ("slowest refusal", max)):
        print(f"{label:<40}" + "".join(f"{pick(col.median(c.id) for c in cases):>16.2f}" for col in columns))
    print(f"{'refusals over 3 s':<40}" + "".join(f"{sum(col.median(c.id) > 3 for c in cases):>16d}" for col in columns))
    print(f"{'refusals over 10 s':<40}" + "".join(f"{sum(col.median(c.id) > 10 for c in cases):>16d}" for col in columns))
    cpu = [statistics.median(v) for v in columns[0].cpu.values()]
    print(f"CPU time per refusal ({columns[0].name}): median {statistics.median(cpu):.2f} s, max {max(cpu):.2f} s")
    print(f"slowest {args.slowest} (by {columns[-1].name} wall time):")
    for case in sorted(cases, key=lambda c: -columns[-1].median(c.id))[:args.slowest]:
        print("  " + "".join(f"{col.median(case.id):8.2f} s" for col in columns) + f"  {case.id}")
    problems = [p for col in columns for p in col.problems]
    if problems:
        print(f"{len(problems)} refusal(s) not as the test set expects:")
        for line in problems:
            print("  " + line)
    idle = [columns[0].median(c.id) for c in cases]
    verdicts = [f"idle median {statistics.median(idle):.2f} s < {IDLE_MEDIAN_S:g} s and max {max(idle):.2f} s "
                f"<= {IDLE_MAX_S:g} s: {'met' if statistics.median(idle) < IDLE_MEDIAN_S and max(idle) <= IDLE_MAX_S else 'MISSED'}"]
    if len(columns) > 1:
        loaded = max(columns[1].median(c.id) for c in cases)
        verdicts.append(f"{columns[1].name} max {loaded:.2f} s <= {LOADED_MAX_S:g} s: "
                        f"{'met' if loaded <= LOADED_MAX_S else 'MISSED'}")
    verdicts.append(f"every refusal as expected, none loading TensorFlow: {'met' if not problems else 'MISSED'}")
    print("targets: " + "; ".join(verdicts))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
