"""Study storage at scale: simulated workers against a real PostgreSQL, directly and through the gRPC proxy.

Each simulated worker is automtl's own Optuna backend (``OptunaBackend``: the
same ask, budget checks, owner and parameter attributes, one intermediate value
and pruning check per epoch, heartbeats every ``heartbeat_interval`` and tell
as a real search), with a trial that sleeps instead of training (no
TensorFlow). Workers are threads inside a few processes (``--processes``; each
process pretends to be its own host, so a killed one is found by its stopped
heartbeats, as a lost pod would be). A throwaway PostgreSQL server is started
for the run (see ``tests/pgcluster.py``) with room for every direct connection.

Per configuration (mode x workers) it prints trials per minute, p50/p99
latency of each storage call, storage seconds per trial (as a share of the
trial), and the peak number of database connections (``pg_stat_activity``).
Then, per mode, a quarter of the workers' processes are SIGKILLed mid-trial on
a fixed budget of trials: trials lost or duplicated (target 0), whether the
study finished its budget exactly, and seconds from the kill until the killed
trials were failed and until their retries started.

    python bench/storage_scale.py                          # 8, 32, 128, 256 workers; direct and proxy
    python bench/storage_scale.py --workers 8,32 --trial-seconds 10 --duration 40

The epochs per trial default to a real run's median (``--from-run RUN_DIR``
reads one). Timings depend on the machine: the script prints ``uptime``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bad_input_cases import SPACE  # noqa: E402
from pgcluster import free_port, postgres_server  # noqa: E402

#: Storage methods timed (what the study, the backend and the heartbeat thread call).
TIMED = ("create_new_study", "get_study_id_from_name", "get_study_directions", "get_study_user_attrs",
         "get_study_system_attrs", "set_study_user_attr", "set_study_system_attr", "create_new_trial",
         "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
         "set_trial_system_attr", "get_trial", "get_all_trials", "get_trial_id_from_study_id_trial_number",
         "record_heartbeat", "_get_stale_trial_ids",
         # what Optuna's in-process cache in front of a database calls instead of the public names
         "_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id")
HEARTBEAT_INTERVAL = 10


# -- one child process: `threads` simulated workers -------------------------------------------------
class Timer:
    """Wraps a storage's methods on the instance; records each call's seconds (outermost calls total apart)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {}
        self.outer = 0.0
        self.local = threading.local()
        self.lock = threading.Lock()

    def wrap(self, storage: object) -> object:
        for name in TIMED:
            method = getattr(storage, name, None)
            if method is not None:
                setattr(storage, name, self._timed(name, method))
        return storage

    def _timed(self, name: str, method):
        def call(*args, **kwargs):
            depth = getattr(self.local, "depth", 0)
            self.local.depth = depth + 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.local.depth = depth
                with self.lock:
                    self.calls.setdefault(name, []).append(spent)
                    if depth == 0:
                        self.outer += spent

        return call


def child(args: argparse.Namespace) -> None:
    import optuna

    import automtl.backends.optuna.backend as backend_module
    from automtl.backends.optuna.storage import open_storage
    from automtl.config import SearchConfig
    from automtl.space import load_space
    from automtl.core.trial import TrialOutcome

    host = f"sim-{args.child}"
    socket.gethostname = lambda: host  # each process is its own "machine": a dead one is found by heartbeats
    timer = Timer()
    backend_module.open_storage = lambda *a, **k: timer.wrap(open_storage(*a, **k))
    space_file = Path(args.tmp) / "space.yaml"
    space = load_space(space_file, ["price", "kind"])
    done: list[int] = []
    epoch_seconds = args.trial_seconds / args.epochs

    def objective(handle):
        rng = 0.5 + (hash((host, handle.number)) % 1000) / 4000
        for epoch in range(1, args.epochs + 1):
            time.sleep(epoch_seconds)
            handle.report(epoch, rng * (1 - 0.5 ** epoch))
        return TrialOutcome(rng, {}, {}, args.epochs, args.epochs, "cpu")

    def worker(index: int) -> None:
        settings = SearchConfig(trials=args.budget, epochs=args.epochs, storage=args.storage, pruner="median",
                                heartbeat_interval=HEARTBEAT_INTERVAL, seed=index)
        for attempt in range(5):  # hundreds of workers opening one study at once may race
            try:
                backend = backend_module.OptunaBackend(settings, Path(args.tmp), space, args.study)
                break
            except Exception as exc:  # noqa: BLE001
                if attempt == 4:
                    print(f"worker {host}/{index} could not open the study: {exc}", file=sys.stderr, flush=True)
                    return
                time.sleep(1 + attempt)
        timeout = args.duration if args.duration else None
        backend.optimize(objective, args.budget, timeout, lambda record: done.append(record.number))

    def dump() -> None:  # written as it goes: the coordinator may stop this process at its time limit
        with timer.lock:
            text = json.dumps({"calls": timer.calls, "storage_seconds": timer.outer, "finished": len(done)})
        tmp = Path(f"{args.result}.tmp")
        tmp.write_text(text)
        tmp.replace(args.result)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    threads = [threading.Thread(target=worker, args=(i + args.child * args.threads,), daemon=True)
               for i in range(args.threads)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    while any(t.is_alive() for t in threads):
        dump()
        time.sleep(5)
    dump()


# -- the coordinator ---------------------------------------------------------------------------------
def connections(url: str) -> int:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname="postgres",
                         autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                (u.database,)).fetchone()[0])


class Peak(threading.Thread):
    """Polls the database's connection count while a configuration runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.peak, self.stopped = url, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, connections(self.url))
            except Exception:  # noqa: BLE001 - the server may refuse a poll when it is full
                pass
            self.stopped.wait(0.5)


def start_proxy(url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "automtl.cli", "storage", "serve", "--port", str(port),
                             "--threads", "64"], env=dict(os.environ, AUTOMTL_STORAGE=url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from automtl.backends.optuna.location import check_proxy

    address = f"grpc://127.0.0.1:{port}"
    check_proxy(address, timeout=60)
    return proc, address


def run_children(args: argparse.Namespace, storage: str, study: str, workers: int, budget: int,
                 duration: float | None, tmp: Path, kill_after: float | None = None,
                 poll_url: str | None = None) -> dict:
    """Start the worker processes; optionally SIGKILL a quarter of them ``kill_after`` seconds in."""
    processes = min(args.processes, workers)
    per = workers // processes
    procs, results = [], []
    for i in range(processes):
        result = tmp / f"{study}-{i}.json"
        results.append(result)
        cmd = [sys.executable, __file__, "--child", str(i), "--threads", str(per), "--storage", storage,
               "--study", study, "--budget", str(budget), "--epochs", str(args.epochs),
               "--trial-seconds", str(args.trial_seconds), "--duration", str(duration or 0), "--tmp", str(tmp),
               "--result", str(result)]
        procs.append(subprocess.Popen(cmd, stderr=open(tmp / f"{study}-{i}.log", "w")))
    killed_at, killed_hosts = None, []
    if kill_after is not None:
        victims = [f"sim-{i}:" for i in range(max(1, processes // 4))]
        wait_for_running(poll_url or storage, study, victims)  # each process to kill is mid-trial
        time.sleep(kill_after)
        for i, proc in enumerate(procs[: len(victims)]):
            proc.send_signal(signal.SIGKILL)
            killed_hosts.append(f"sim-{i}")
        killed_at = datetime.datetime.now()
    # a throughput run ends 2 trial lengths after its window (a run the storage cannot keep up with is cut
    # there: its figures are what it did until then); a SIGKILL test waits for the budget, up to 15 minutes
    limit = time.time() + (duration + 2 * args.trial_seconds + 30 if duration else 900)
    cut = False
    for proc in procs:
        try:
            proc.wait(timeout=max(1, limit - time.time()))
        except subprocess.TimeoutExpired:
            cut = True
            proc.kill()
            proc.wait()
    merged: dict[str, list[float]] = {}
    storage_seconds, finished = 0.0, 0
    for path in results:
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for name, values in data["calls"].items():
            merged.setdefault(name, []).extend(values)
        storage_seconds += data["storage_seconds"]
        finished += data["finished"]
    return {"calls": merged, "storage_seconds": storage_seconds, "finished": finished, "killed_at": killed_at,
            "killed_hosts": killed_hosts, "cut": cut}


def wait_for_running(url: str, study: str, hosts: list[str], timeout: float = 600) -> None:
    """Until every process named in ``hosts`` (``sim-K:``) has a running trial."""
    import optuna
    from optuna.trial import TrialState

    from automtl.backends.optuna.storage import OWNER_ATTR

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            running = optuna.load_study(study_name=study, storage=url).get_trials(
                deepcopy=False, states=(TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        owners = {str(t.user_attrs.get(OWNER_ATTR, "")) for t in running}
        if all(any(o.startswith(h) for o in owners) for h in hosts):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the processes to kill never ran a trial: {hosts}")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def throughput(args, url: str, mode: str, workers: int, tmp: Path) -> dict:
    proxy = None
    storage = url
    if mode == "proxy":
        proxy, storage = start_proxy(url)
    peak = Peak(url)
    peak.start()
    try:
        started = time.time()
        out = run_children(args, storage, f"{mode}-{workers}", workers, 10**6, args.duration, tmp)
        elapsed = time.time() - started
    finally:
        peak.stopped.set()
        peak.join()
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=30)
    import optuna

    study = optuna.load_study(study_name=f"{mode}-{workers}", storage=url)
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    # the active period: from the first trial's start (the processes' start-up left out) to the last end
    active = (max(t.datetime_complete for t in complete) - min(t.datetime_start for t in complete)).total_seconds() \
        if complete else float("nan")
    per_trial = out["storage_seconds"] / max(1, out["finished"])
    return {"mode": mode, "workers": workers, "seconds": elapsed, "trials": len(complete), "cut": out["cut"],
            "trials_per_min": 60 * len(complete) / active, "storage_s_per_trial": per_trial,
            "storage_share": per_trial / args.trial_seconds, "peak_connections": peak.peak,
            "latency": {name: {"n": len(v), "p50_ms": 1e3 * pct(v, 0.5), "p99_ms": 1e3 * pct(v, 0.99)}
                        for name, v in sorted(out["calls"].items())}}


def kill_test(args, url: str, mode: str, workers: int, tmp: Path) -> dict:
    """A fixed budget; a quarter of the processes SIGKILLed mid-trial; what the study holds afterwards."""
    import optuna
    from optuna.trial import TrialState

    from automtl.backends.optuna.storage import OWNER_ATTR, counts, retried_numbers

    proxy = None
    storage = url
    if mode == "proxy":
        proxy, storage = start_proxy(url)
    study_name = f"kill-{mode}-{workers}"
    budget = 3 * workers
    try:
        out = run_children(args, storage, study_name, workers, budget, None, tmp,
                           kill_after=args.trial_seconds / 2, poll_url=url)
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=30)
    trials = optuna.load_study(study_name=study_name, storage=url).get_trials()
    hosts = tuple(f"{h}:" for h in out["killed_hosts"])
    by_number = {t.number: t for t in trials}
    killed = [t for t in trials if str(t.user_attrs.get(OWNER_ATTR, "")).startswith(hosts)
              and t.datetime_complete is not None and t.datetime_complete > out["killed_at"]
              and t.state == TrialState.FAIL and "failed_trial" not in t.system_attrs]
    # A killed trial's chain: it and its retries (Optuna's retries name the first trial as failed_trial).
    chains: dict[int, list] = {}
    for t in trials:
        root = t.system_attrs.get("failed_trial")
        if root is not None:
            chains.setdefault(int(root), []).append(t)
    done_states = (TrialState.COMPLETE, TrialState.PRUNED)
    lost = [t.number for t in killed if not any(r.state in done_states for r in chains.get(t.number, []))]
    lost += [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    duplicated = [n for n, chain in chains.items() if sum(r.state in done_states for r in chain) > 1]
    retries = {n: chain for n, chain in chains.items() if n in by_number}
    retried = retried_numbers(trials)
    counted = sum(counts(t, retried) for t in trials)
    at = out["killed_at"]
    failed_after = [(t.datetime_complete - at).total_seconds() for t in killed]
    retry_after = [min((r.datetime_start - at).total_seconds() for r in retries[t.number] if r.datetime_start)
                   for t in killed if any(r.datetime_start for r in retries.get(t.number, []))]
    return {"mode": mode, "workers": workers, "killed_processes": len(out["killed_hosts"]), "cut": out["cut"],
            "killed_trials": len(killed), "lost": len(lost), "duplicated": len(duplicated), "budget": budget,
            "retries_failed_again": sum(r.state == TrialState.FAIL for t in killed for r in retries.get(t.number, [])),
            "counted": counted, "failed_after_s": max(failed_after, default=float("nan")),
            "retried_after_s": max(retry_after, default=float("nan"))}


def real_check(url: str, tmp: Path, trials: int = 8) -> dict:
    """4 real worker processes (``automtl search --workers 4``) through the proxy: the study's budget, 0 lost."""
    import optuna
    from optuna.trial import TrialState

    from automtl.backends.optuna.storage import counts, retried_numbers
    from bad_input_cases import frame

    frame(400).to_csv(tmp / "data.csv", index=False)
    exp = {"name": "real", "data": {"train": "data.csv", "valid_fraction": 0.25}, "space": "space.yaml",
           "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
           "tasks": [{"name": "price", "type": "regression", "target": "price"},
                     {"name": "kind", "type": "classification", "target": "kind"}]}
    (tmp / "real.yaml").write_text(yaml.safe_dump(exp))
    proxy, address = start_proxy(url)
    try:
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--config", str(tmp / "real.yaml"),
                               "--workers", "4", "--storage", address, "--study", "real", "--trials", str(trials),
                               "--epochs", "2", "--baselines", "off", "--ensemble", "0", "--no-report", "-q",
                               "--out", str(tmp / "real-run")], capture_output=True, text=True, timeout=1800)
        seconds = time.time() - started
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    if done.returncode != 0:
        raise SystemExit(f"the real-trial check failed:\n{done.stdout}{done.stderr}")
    tried = optuna.load_study(study_name="real", storage=url).get_trials()
    retried = retried_numbers(tried)
    unfinished = [t.number for t in tried if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return {"workers": 4, "budget": trials, "counted": sum(counts(t, retried) for t in tried),
            "lost": len(unfinished), "owners": len({t.user_attrs.get("worker") for t in tried}), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="8,32,128,256")
    parser.add_argument("--modes", default="proxy,direct")
    parser.add_argument("--processes", type=int, default=8, help="worker processes (the workers are threads in them)")
    parser.add_argument("--trial-seconds", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: --from-run's median, else 20)")
    parser.add_argument("--from-run", type=Path, help="a real run folder: its complete trials' median epochs")
    parser.add_argument("--duration", type=float, default=75.0, help="seconds each throughput configuration runs")
    parser.add_argument("--kill-workers", type=int, default=32, help="workers of the SIGKILL test (0: skip it)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--real-check", action="store_true",
                        help="only the real-trial check: `automtl search --workers 4` through the proxy")
    # the child's own arguments
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    for name in ("--threads", "--budget"):
        parser.add_argument(name, type=int, help=argparse.SUPPRESS)
    for name in ("--storage", "--study", "--tmp", "--result"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        args.duration = args.duration or None
        child(args)
        return
    if args.real_check:
        with tempfile.TemporaryDirectory(prefix="automtl-real-") as tmp_name, postgres_server() as url:
            (Path(tmp_name) / "space.yaml").write_text(yaml.safe_dump(SPACE))
            r = real_check(url, Path(tmp_name))
        print(f"real trials: 4 worker processes through the proxy finished {r['counted']} of {r['budget']} trials "
              f"(lost {r['lost']}, {r['owners']} workers ran trials) in {r['seconds']:.0f} s")
        return
    if args.epochs is None:
        args.epochs = run_epochs(args.from_run) if args.from_run else 20
    counts = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    print(f"simulated workers: {counts}; {args.processes} processes; trials of {args.trial_seconds:g} s, "
          f"{args.epochs} epochs; heartbeats every {HEARTBEAT_INTERVAL} s", flush=True)
    results, kills = [], []
    with tempfile.TemporaryDirectory(prefix="automtl-scale-") as tmp_name, \
            postgres_server(max_connections=max(100, 4 * max(counts) + 50)) as url:
        tmp = Path(tmp_name)
        (tmp / "space.yaml").write_text(yaml.safe_dump(SPACE))
        for mode in modes:
            for workers in counts:
                row = throughput(args, url, mode, workers, tmp)
                results.append(row)
                print(summary_line(row), flush=True)
                save(args, results, kills)
            if args.kill_workers:
                kills.append(kill_test(args, url, mode, args.kill_workers, tmp))
                print(kill_line(kills[-1]), flush=True)
                save(args, results, kills)
    print_tables(results, kills, args)


def save(args: argparse.Namespace, results: list[dict], kills: list[dict]) -> None:
    """The figures so far (``--json``), after every configuration."""
    if args.json:
        args.json.write_text(json.dumps({"throughput": results, "kill": kills}, indent=1, default=str))


def run_epochs(run_dir: Path) -> int:
    records = json.loads((run_dir / "trials.json").read_text())
    trials = records["trials"] if isinstance(records, dict) else records
    epochs = [t.get("epochs") for t in trials if t.get("state") == "complete" and t.get("epochs")]
    return int(statistics.median(epochs)) if epochs else 20


def summary_line(r: dict) -> str:
    return (f"{r['mode']:>6} {r['workers']:>4} workers: {r['trials_per_min']:.1f} trials/min, storage "
            f"{r['storage_s_per_trial']:.3f} s/trial ({100 * r['storage_share']:.2f} %), peak connections "
            f"{r['peak_connections']}" + (" (cut at its time limit)" if r["cut"] else ""))


def kill_line(k: dict) -> str:
    return (f"{k['mode']:>6} SIGKILL of {k['killed_processes']} of {min(8, k['workers'])} processes "
            f"({k['workers']} workers): {k['killed_trials']} trials killed, lost {k['lost']}, duplicated "
            f"{k['duplicated']}, counted {k['counted']}/{k['budget']}; failed after {k['failed_after_s']:.0f} s, "
            f"retried after {k['retried_after_s']:.0f} s")


def print_tables(results: list[dict], kills: list[dict], args) -> None:
    print("\n| mode | workers | trials/min | storage s/trial | share of a trial | peak DB connections | "
          "p50 / p99 ms: ask (create_new_trial) | intermediate value | heartbeat | get_all_trials | tell |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lat = r["latency"]

        def cell(name: str) -> str:
            v = lat.get(name) or lat.get(f"_{name}") or lat.get(name.replace("get_all_trials", "_get_trials"))
            return f"{v['p50_ms']:.1f} / {v['p99_ms']:.1f}" if v else "-"

        print(f"| {r['mode']} | {r['workers']}{' (cut)' if r['cut'] else ''} | {r['trials_per_min']:.1f} | {r['storage_s_per_trial']:.3f} | "
              f"{100 * r['storage_share']:.2f} % | {r['peak_connections']} | {cell('create_new_trial')} | "
              f"{cell('set_trial_intermediate_value')} | {cell('record_heartbeat')} | {cell('get_all_trials')} | "
              f"{cell('set_trial_state_values')} |")
    for mode in sorted({r["mode"] for r in results}):
        ok = [r["workers"] for r in results if r["mode"] == mode and r["storage_share"] < 0.05]
        print(f"{mode}: largest worker count with storage under 5 % of a {args.trial_seconds:g}-second trial: "
              f"{max(ok) if ok else 'none'}")
    if kills:
        print("\n| mode | workers | processes killed | trials killed | lost | duplicated | counted / budget | "
              "failed after (s) | retried after (s) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in kills:
            print(f"| {k['mode']} | {k['workers']} | {k['killed_processes']} | {k['killed_trials']} | {k['lost']} | "
                  f"{k['duplicated']} | {k['counted']} / {k['budget']} | {k['failed_after_s']:.0f} | "
                  f"{k['retried_after_s']:.0f} |")
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (at the end)")


if __name__ == "__main__":
    main()
