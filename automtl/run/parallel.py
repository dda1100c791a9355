"""``--workers N``: N search workers on one machine sharing one study.

The launching process (the coordinator) checks the experiment and fits the
plugins once, then starts N search workers (``python -m automtl.run.search_worker``), each
an ordinary search process on the same study store: the run folder's
journal file (``study.journal``) by default. Optuna coordinates them (there
is no scheduler here): each draws its trials from the shared study and
together they finish exactly ``--trials`` trials (see
:mod:`automtl.backends.optuna.backend`). With GPUs, worker *i* sees only
GPU *i mod count* (``CUDA_VISIBLE_DEVICES``); on CPUs the cores are split
between them. When they have all ended, the coordinator writes the tables
and exports the best trial, once.

Ctrl-C reaches the coordinator only (workers run in their own session); it
passes one SIGINT to every worker, each records its running trial as
interrupted and exits, and the best trial so far is exported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from automtl import backends
from automtl.config import Experiment

#: Worker exit codes the coordinator understands.
EXIT_DONE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 3, 130
#: The shared study's storage, handed to each worker.
STORAGE_ENV = "AUTOMTL_WORKER_STORAGE"
#: The coordinator's deadline (``time.time()`` seconds), so every worker stops at the same moment.
DEADLINE_ENV = "AUTOMTL_DEADLINE"
#: Seconds a worker gets to record its interrupted trial before it is killed.
INTERRUPT_GRACE_SECONDS = 30


def resolve_workers(workers: int | str, device: str) -> tuple[int, list[str]]:
    """``(number of workers, GPU ids to pin them to)``; ``auto`` is one per GPU (1 without GPUs)."""
    if workers != "auto" and int(workers) == 1:
        return 1, []
    gpus: list[str] = []
    if device != "cpu":
        from automtl.devices import physical_gpu_ids

        gpus = physical_gpu_ids()
    count = max(1, len(gpus)) if workers == "auto" else int(workers)
    return count, gpus


def worker_environment(index: int, count: int, gpus: list[str], base: dict[str, str] | None = None) -> dict[str, str]:
    """Worker ``index``'s environment: its own GPU, or its share of the CPU cores."""
    env = dict(os.environ if base is None else base)
    env["AUTOMTL_WORKER"] = str(index)
    env["PYTHONUNBUFFERED"] = "1"  # its trial lines reach the coordinator as they happen
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    else:
        share = max(1, (os.cpu_count() or 1) // count)
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(share))
        env.setdefault("TF_NUM_INTEROP_THREADS", str(min(2, share)))
    return env


@dataclass
class WorkersResult:
    exit_codes: list[int | None] = field(default_factory=list)
    interrupted: bool = False
    #: why the workers stopped early, when one was stopped by its failures
    stopped: str | None = None


def run_workers(exp: Experiment, run_dir: Path, storage: str, count: int, gpus: list[str],
                console: Console, quiet: bool = False, deadline: float | None = None) -> WorkersResult:
    """Start ``count`` workers on the study in ``storage`` and wait for them all (all end by ``deadline``)."""
    spec = exp.model_dump(mode="json")
    spec["search"].update(workers=1, storage=None)  # the storage URL travels in the environment: no password on disk
    spec_path = Path(run_dir) / "workers.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    procs: list[subprocess.Popen] = []
    relays: list[threading.Thread] = []
    stop_notes: list[str] = []
    result = WorkersResult()
    if not quiet:
        where = f"GPU {', '.join(gpus)}" if gpus else "CPU"
        shown = backends.spec(exp.search.backend).study_store().redact(storage)
        console.print(f"{count} workers on one study ({shown}); {where}", highlight=False)
    try:
        for i in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "automtl.run.search_worker", str(spec_path), str(i)],
                env={**worker_environment(i, count, gpus), STORAGE_ENV: storage,
                     **({DEADLINE_ENV: repr(deadline)} if deadline is not None else {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True,
            )
            procs.append(proc)
            relay = threading.Thread(target=_relay, args=(proc, i, console, quiet, stop_notes), daemon=True)
            relay.start()
            relays.append(relay)
        for proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        result.interrupted = True
        console.print("[yellow]interrupted: stopping the workers (their running trials are recorded as interrupted)[/]")
        _interrupt(procs)
    for relay in relays:
        relay.join(timeout=5)
    result.exit_codes = [p.returncode for p in procs]
    result.interrupted = result.interrupted or any(c == EXIT_INTERRUPTED for c in result.exit_codes)
    if stop_notes:
        result.stopped = stop_notes[0]
    for i, code in enumerate(result.exit_codes):
        if code not in (EXIT_DONE, EXIT_STOPPED, EXIT_INTERRUPTED):
            console.print(f"[red]worker {i} ended with exit code {code}[/] (its running trial, if any, is retried "
                          "by the others or when the command is run again)", highlight=False)
    return result


def _relay(proc: subprocess.Popen, index: int, console: Console, quiet: bool, stop_notes: list[str]) -> None:
    """Print a worker's lines with its number in front (the stop message is kept for the summary)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line.startswith("stopped: "):
            stop_notes.append(line.removeprefix("stopped: "))
        if line and (not quiet or line.startswith(("Error", "stopped"))):
            console.print(f"[dim]w{index}[/] {escape(line)}", highlight=False, soft_wrap=True)


def _interrupt(procs: list[subprocess.Popen]) -> None:
    """One SIGINT to each worker, time to record its trial, then SIGKILL (a second Ctrl-C: at once)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    try:
        for proc in procs:
            try:
                proc.wait(timeout=INTERRUPT_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    except KeyboardInterrupt:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
