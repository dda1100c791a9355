"""One search worker of ``--workers N``: an ordinary search on the shared study (started by the coordinator).

``python -m automtl.run.search_worker SPEC.json INDEX``; it reports through
its exit code (:data:`~automtl.run.parallel.EXIT_DONE` and friends) and
leaves the export to the coordinator.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console

from automtl.config import Experiment
from automtl.errors import AutomtlError
from automtl.run.parallel import EXIT_DONE, EXIT_INTERRUPTED, EXIT_STOPPED, STORAGE_ENV


def worker_main(spec_path: str, index: str) -> int:
    """One worker: an ordinary search on the shared study that leaves the export to the coordinator."""
    from automtl.tfimport import import_tensorflow_quietly

    import_tensorflow_quietly()
    from automtl.run.search import run_search

    spec = json.loads(Path(spec_path).read_text())
    spec["search"]["storage"] = os.environ[STORAGE_ENV]
    exp = Experiment.model_validate(spec)
    # Plain lines on the coordinator's pipe, never wrapped.
    console = Console(force_terminal=False, width=400, soft_wrap=True)
    try:
        summary = run_search(exp, console=console, report=False, worker=True)
    except AutomtlError as exc:
        print(f"Error: {exc}", flush=True)
        return 2
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.stopped:
        print(f"stopped: {summary.stopped}", flush=True)
        return EXIT_STOPPED
    return EXIT_DONE


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m automtl.run.search_worker WORKER_SPEC.json INDEX (started by `automtl search --workers N`)")
    sys.exit(worker_main(sys.argv[1], sys.argv[2]))
