"""What a finished search hands back, and the summary it prints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from automtl.outputs.results import leaderboard
from automtl.run.progress import leaderboard_table
from automtl.trial import TrialRecord


@dataclass
class SearchSummary:
    run_dir: Path
    records: list[TrialRecord]
    best: TrialRecord | None
    export_dir: Path | None
    interrupted: bool = False
    report: Path | None = None
    #: why the search stopped before its budget (e.g. ten failures in a row)
    stopped: str | None = None
    #: a search worker or Keras Tuner worker: another process records the study and exports
    worker: bool = False


def print_summary(console: Console, s: SearchSummary, primaries: dict[str, str]) -> None:
    counts: dict[str, int] = {}
    for r in s.records:
        counts[r.state] = counts.get(r.state, 0) + 1
    console.print(f"\n{len(s.records)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    top = leaderboard(s.records)
    if top:
        console.print(leaderboard_table(top, primaries))
    if s.best is None:
        console.print("[red]no trial completed; nothing to export[/] (see trials.csv for the reasons)")
        return
    front = sorted(r.number for r in s.records if r.pareto)
    if front:
        console.print(f"Pareto front: trials {', '.join(map(str, front))} "
                      f"(export any with `automtl export {os.path.relpath(s.run_dir)} --trial N --out DIR`)",
                      highlight=False, soft_wrap=not console.is_terminal)
    rel = os.path.relpath(s.export_dir) if s.export_dir else ""
    exported = (f"exported to [bold]{rel}[/]: saved_model/ (serving_default), model.keras, automtl.json"
                if s.export_dir else "not exported here (it trained in another run folder)")
    console.print(
        f"best trial #{s.best.number} (score {s.best.score:.4f}) {exported}\n"
        f"all trials: {os.path.relpath(s.run_dir / 'trials.csv')}"
        + (f"\nreport: {os.path.relpath(s.report)}" if s.report else ""),
        highlight=False,
    )
