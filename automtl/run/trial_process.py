"""Trials in a recycled *trial process*: bounded memory and crash isolation.

TensorFlow keeps roughly a megabyte of native memory per trial that no
clean-up returns, and a trial can die hard (a killed process, a native
crash). :class:`ProcessTrialRunner` runs trials in a child process that is
replaced after ``trials_per_process`` trials or when it dies; the backend
stays in the parent and still receives every epoch's report (for pruning).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from automtl.config import Experiment
from automtl.core.trial import TrialHandle, TrialOutcome, TrialPruned
from automtl.errors import TrialFailed

#: Optional handle attributes forwarded to the trial process (e.g. a backend's epoch budget or warm start).
HANDLE_EXTRAS = ("epochs", "initial_epoch", "initial_weights", "cost_model", "seconds", "fidelity")


@dataclass
class _ChildHandle:
    """The trial process's handle: forwards each epoch's report to the parent and obeys its answer."""

    conn: Any
    number: int
    params: dict[str, Any]

    def report(self, epoch: int, value: float) -> None:
        self.conn.send(("epoch", epoch, value))
        answer = self.conn.recv()
        if answer[0] == "prune":
            raise TrialPruned(answer[1])


def _trial_process_main(conn: Any, experiment: dict[str, Any], run_dir: str) -> None:
    """Child process: prepare the data once, then run trials until told to stop."""
    # Ctrl-C is the parent's to handle: it records the trial as interrupted and stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve_trials(conn, experiment, run_dir)
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent is gone: nobody wants the result
        return


def _serve_trials(conn: Any, experiment: dict[str, Any], run_dir: str) -> None:
    from automtl.tfimport import import_tensorflow_quietly

    import_tensorflow_quietly()
    from automtl.data.prepare import instantiate, prepare
    from automtl.devices import configure
    from automtl.training.runner import TrialRunner

    exp = Experiment.model_validate(experiment)
    configure(exp.search.device, exp.search.precision)  # before the data touches TensorFlow
    encoders, tasks = instantiate(exp)
    runner = TrialRunner(prepare(exp, encoders, tasks, Path(run_dir)), Path(run_dir))
    conn.send(("ready", os.getpid()))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        _, number, params, extras = message
        handle = _ChildHandle(conn, number, params)
        for key, value in extras.items():
            setattr(handle, key, value)
        try:
            conn.send(("done", runner(handle)))
        except TrialPruned as exc:
            conn.send(("pruned", str(exc), exc.cost))
        except TrialFailed as exc:
            conn.send(("failed", exc.reason))
        except Exception as exc:  # an unexpected error fails this trial, not the search
            conn.send(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5)))


class ProcessTrialRunner:
    """Same call interface as :class:`~automtl.training.runner.TrialRunner`, in a child process."""

    def __init__(self, experiment: Experiment, run_dir: Path, trials_per_process: int,
                 on_epoch: Callable[[int, int, float], None] | None = None, deadline: float | None = None) -> None:
        self.experiment = experiment.model_dump(mode="python")
        # The child trains trials only; the study lives in this process's backend. A single-task
        # baseline search's study is a storage key ("<study>/single/<task>"), not a name a user may
        # give, and would fail the child's validation of the experiment.
        self.experiment["search"]["study"] = None
        self.run_dir = str(run_dir)
        self.limit = max(1, trials_per_process)
        self.on_epoch = on_epoch
        #: the search's end (``time.time()`` seconds), sent with every trial: the child stops at an epoch's end
        self.deadline = deadline
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self._served = 0
        self._interrupted = False
        self.pids: list[int] = []

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_trial_process_main, args=(child, self.experiment, self.run_dir),
                                       name="automtl-trial-process", daemon=True)
        self._proc.start()
        child.close()
        self._conn, self._served = parent, 0
        message = self._receive()
        if message[0] != "ready":
            raise TrialFailed(f"the trial process did not start: {message}")
        self.pids.append(message[1])

    def _send(self, message: tuple) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._receive()  # the trial process is gone: raises as a closed pipe does (TrialFailed or Ctrl-C)
            raise TrialFailed("the trial process stopped answering") from None

    def _receive(self) -> tuple:
        try:
            return self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            code = self._proc.exitcode if self._proc.join(timeout=5) is None else self._proc.exitcode
            self._proc = None
            if self._interrupted:
                raise KeyboardInterrupt from None  # Ctrl-C, raised here: outside any study write
            raise TrialFailed(f"the trial process died (exit code {code})") from None

    def warm_up(self) -> None:
        """Start the trial process now, so its start-up is not counted in the first trial's time."""
        if self._proc is None:
            self._start()

    def __call__(self, handle: TrialHandle) -> TrialOutcome:
        if self._proc is None or self._served >= self.limit or not self._proc.is_alive():
            self.close()
            self._start()
        self._served += 1
        extras = {k: getattr(handle, k) for k in HANDLE_EXTRAS if getattr(handle, k, None) is not None}
        if self.deadline is not None:
            extras["deadline"] = self.deadline
        self._conn.send(("trial", handle.number, dict(handle.params), extras))
        self._interrupted = False
        previous = self._defer_sigint()
        try:
            return self._follow(handle)
        except KeyboardInterrupt:
            self._kill()  # Ctrl-C: the trial is abandoned, its process must not linger
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _defer_sigint(self) -> Any:
        """While a trial runs, Ctrl-C kills the trial's process and surfaces as KeyboardInterrupt
        when its pipe closes, never in the middle of a study write (an interrupted SQLite write
        leaves the database locked). Returns the previous handler (None off the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        proc = self._proc

        def on_sigint(signum: int, frame: Any) -> None:
            if self._interrupted or proc is None or proc.pid is None:
                raise KeyboardInterrupt  # a second Ctrl-C: at once
            self._interrupted = True
            os.kill(proc.pid, signal.SIGKILL)

        return signal.signal(signal.SIGINT, on_sigint)

    def _follow(self, handle: TrialHandle) -> TrialOutcome:
        """Relay the running trial's epoch reports until it ends."""
        while True:
            message = self._receive()
            kind = message[0]
            if kind == "epoch":
                _, epoch, value = message
                if self.on_epoch is not None:
                    self.on_epoch(handle.number, epoch, value)
                try:
                    handle.report(epoch, value)
                except TrialPruned as exc:
                    self._send(("prune", str(exc)))
                    continue
                self._send(("continue",))
            elif kind == "done":
                return message[1]
            elif kind == "pruned":
                raise TrialPruned(message[1], message[2] if len(message) > 2 else None)
            else:
                raise TrialFailed(message[1])

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
            self._proc = None

    def close(self) -> None:
        """Stop the trial process (politely, then firmly)."""
        if self._proc is None:
            return
        try:
            self._conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc = None
