"""How fast every bad input of the test set is refused, each as a fresh ``automtl`` process.

    python bench/bad_input_speed.py [--repeat 1] [--slowest 10]

Runs every case of ``tests/bad_input_cases.py`` (the table the tests use) as
``python -m automtl ...`` in a new interpreter, as a user would, and prints
the median and maximum wall time of a refusal, the slowest cases, and the
same measure of a bare ``python -c pass`` and ``automtl --help`` taken in
the same rounds (the floor any command pays). Each refusal is also checked:
its exit code, its message fragments, and that TensorFlow was never
imported. Target: every refusal under 2 s. The machine's load is printed
with the result: on a shared machine the times are those of a shared machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bad_input_cases import CASES, Workspace, arguments  # noqa: E402

TARGET_S = 2.0
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (the median counts)")
    ap.add_argument("--slowest", type=int, default=10, help="list this many of the slowest cases")
    args = ap.parse_args()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = Path(tempfile.mkdtemp(prefix="automtl-bad-input-"))
    workspace = Workspace(root)
    cases = [c for c in CASES if not c.needs or _installed(c.needs)]
    print(f"{len(cases)} bad inputs, each a fresh process; {load()} at the start")
    wall: dict[str, list[float]] = {c.id: [] for c in cases}
    cpu: dict[str, list[float]] = {c.id: [] for c in cases}
    floor: dict[str, list[tuple[float, float]]] = {"python -c pass": [], "automtl --help": []}
    problems: list[str] = []
    for _ in range(args.repeat):
        # interleaved: a busy moment of the machine hits the floor and the cases alike
        floor["python -c pass"].append(timed([sys.executable, "-c", "pass"], root, env)[:2])
        floor["automtl --help"].append(timed([sys.executable, "-m", "automtl", "--help"], root, env)[:2])
        for case in cases:
            seconds, cpu_seconds, proc = timed([sys.executable, "-c", WRAPPER, *arguments(case, workspace)], root, env)
            wall[case.id].append(seconds)
            cpu[case.id].append(cpu_seconds)
            output = proc.stdout + proc.stderr
            missing = [f for f in case.fragments if f not in output]
            if proc.returncode != case.code or missing or "Traceback" in output or "TF_LOADED" in output:
                problems.append(f"{case.id}: exit {proc.returncode}, missing {missing}, "
                                f"{'TensorFlow loaded, ' if 'TF_LOADED' in output else ''}output {output[-300:]!r}")
    print(f"end: {load()}")
    print(f"{'':<34}{'wall s':>8}{'CPU s':>8}")
    for name, samples in floor.items():
        print(f"{name + ' (median)':<34}{statistics.median(w for w, _ in samples):>8.2f}"
              f"{statistics.median(c for _, c in samples):>8.2f}")
    per_wall = {k: statistics.median(v) for k, v in wall.items()}
    per_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for label, per in (("wall", per_wall), ("CPU", per_cpu)):
        values = sorted(per.values())
        print(f"refusal {label} time over {len(values)} cases: median {statistics.median(values):.2f} s, "
              f"max {values[-1]:.2f} s, {sum(v >= TARGET_S for v in values)} at or over {TARGET_S:.0f} s")
    print(f"slowest {args.slowest} (by wall time; CPU time in brackets):")
    for name, seconds in sorted(per_wall.items(), key=lambda kv: -kv[1])[:args.slowest]:
        print(f"  {seconds:6.2f} s ({per_cpu[name]:.2f} s)  {name}")
    if problems:
        print(f"{len(problems)} case(s) not refused as the test set expects:")
        for line in problems:
            print("  " + line)
    worst = max(per_wall.values())
    verdict = "met" if worst < TARGET_S and not problems else "MISSED"
    print(f"target: every refusal under {TARGET_S:.0f} s wall, none loading TensorFlow: {verdict}"
          + ("" if verdict == "met" else f" (worst {worst:.2f} s wall, {max(per_cpu.values()):.2f} s CPU)"))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
