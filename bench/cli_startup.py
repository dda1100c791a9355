"""Start-up time of the light commands against a bare interpreter, measured side by side.

    python bench/cli_startup.py [--repeat 15]

Prints the median wall time of ``python -c pass`` and of ``python -m automtl
--help`` / ``plugins`` / ``spaces`` / ``search --help``, each as the extra over
the bare interpreter. Target: ``--help`` within 0.2 s of ``python -c pass``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "automtl --help": [sys.executable, "-m", "automtl", "--help"],
    "automtl plugins": [sys.executable, "-m", "automtl", "plugins"],
    "automtl spaces": [sys.executable, "-m", "automtl", "spaces"],
    "automtl search --help": [sys.executable, "-m", "automtl", "search", "--help"],
}


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    # interleaved rounds, so a busy moment of the machine hits every command alike
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, cmd in COMMANDS.items():
            samples[name].append(median_seconds(cmd, 1))
    base = statistics.median(samples["python -c pass"])
    print(f"{'command':<24}{'median s':>10}{'over bare python':>18}")
    for name, values in samples.items():
        m = statistics.median(values)
        print(f"{name:<24}{m:>10.3f}{m - base:>+18.3f}")
    extra = statistics.median(samples["automtl --help"]) - base
    print(f"automtl --help over a bare interpreter: {extra:+.3f} s (target <= +0.200 s): {'met' if extra <= 0.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
