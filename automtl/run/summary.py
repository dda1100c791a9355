"""What a finished search hands back, and the summary it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from automtl.console import shown
from automtl.core.trial import TrialRecord
from automtl.run.progress import leaderboard_table
from automtl.rundir import chance
from automtl.rundir.results import leaderboard


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
    #: single-task baselines (:class:`automtl.rundir.baselines.Baselines`) and the ensemble
    #: (:class:`automtl.rundir.ensemble.EnsembleResult`), when the run made them
    baselines: Any = None
    ensemble: Any = None
    ensemble_dir: Path | None = None
    #: what the finish phase wants the user to know (skipped steps, tasks an ensemble cannot average)
    notes: list[str] = field(default_factory=list)
    #: the run's tasks as ``trials.json`` records them (metric, direction, chance level)
    tasks: list[dict[str, Any]] = field(default_factory=list)


#: Trial states of trials that have not run (yet): a queued start point, one another process runs.
NOT_RUN = ("waiting", "running")


def trial_counts(records: list[TrialRecord]) -> str:
    """``"4 trials ran: 3 complete, 1 pruned"``: only trials that ran count; queued or running ones apart."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    ran = {k: v for k, v in counts.items() if k not in NOT_RUN}
    text = f"{sum(ran.values())} trial{'s' if sum(ran.values()) != 1 else ''} ran"
    text += (": " + ", ".join(f"{v} {k}" for k, v in sorted(ran.items()))) if ran else ""
    later = [f"{counts[k]} {'queued' if k == 'waiting' else 'running in another process'}" for k in NOT_RUN
             if counts.get(k)]
    return text + (f" ({', '.join(later)}, not counted)" if later else "")


def print_summary(console: Console, s: SearchSummary, primaries: dict[str, str]) -> None:
    from automtl.console import print_table
    from automtl.rundir.outdir import exported_files

    soft = not console.is_terminal
    console.print("\n" + trial_counts(s.records), highlight=False)
    top = leaderboard(s.records)
    if top:
        print_table(console, leaderboard_table(top, primaries, chance.header(s.tasks)), drop=LEADERBOARD_DROP)
    if s.best is None:
        console.print("[red]no trial completed; nothing to export[/] (see trials.csv for the reasons)")
        return
    front = sorted(r.number for r in s.records if r.pareto)
    if front:
        console.print(f"Pareto front: trials {', '.join(map(str, front))} "
                      f"(export any with `automtl export {shown(s.run_dir)} --trial N --out DIR`)",
                      highlight=False, soft_wrap=soft)
    exported = (f"exported to [bold]{shown(s.export_dir)}[/]: {', '.join(exported_files(s.export_dir))}"
                if s.export_dir else "not exported here (it trained in another run folder)")
    console.print(f"best trial #{s.best.number} (score {s.best.score:.4f}) {exported}", highlight=False,
                  soft_wrap=soft)
    for line in chance.lines(s.tasks, s.best):
        console.print(f"chance level of {line} (validation rows)", highlight=False, soft_wrap=soft)
    for warning in chance.shortfalls(s.tasks, s.best):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=soft)
    if s.ensemble is not None:
        e = s.ensemble
        where = (f"exported to [bold]{shown(s.ensemble_dir)}[/]: {', '.join(exported_files(s.ensemble_dir))}"
                 if s.ensemble_dir else "not exported")
        console.print(f"ensemble of {e.describe()}: score {e.score:.4f} vs best single trial {e.best_single['score']:.4f} "
                      f"({e.gain:+.4f}) on the validation rows; {where}", highlight=False, soft_wrap=soft)
    if s.baselines is not None:
        print_baselines(console, s.baselines, shown(s.run_dir))
    for note in s.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=soft)
    console.print(
        f"all trials: {shown(s.run_dir / 'trials.csv')}"
        + (f"\nreport: {shown(s.report)}" if s.report else ""),
        highlight=False,
    )


#: The leaderboard's columns a narrow terminal loses first (before rich shortens any cell).
LEADERBOARD_DROP = ("time", "rank", "params")


def print_baselines(console: Console, b: Any, run_dir: str) -> None:
    """The single-task baselines beside the best trial, delta-m, and per task in words."""
    from rich.table import Table

    from automtl.console import print_table
    from automtl.rundir.baselines import summary_sentence, task_sentence

    how = ("each task retrained alone with the best trial's configuration" if b.mode == "auto"
           else "a single-task search per task")
    table = Table(title=f"Single-task baselines ({how}; {b.trainings} training(s), {b.seconds:.0f} s, "
                        "apart from the search budget)", title_justify="left")
    for col in ("task", "metric", "multi-task", "single-task", "change", "verdict"):
        table.add_column(col, justify="left" if col in ("task", "metric", "verdict") else "right", no_wrap=True)
    for t in b.tasks:
        table.add_row(t.task, t.metric, f"{t.multi:.4g}", f"{t.single:.4g}",
                      "n/a" if t.delta is None else f"{t.delta:+.2f} %", t.verdict)
    print_table(console, table, drop=())
    console.print(summary_sentence(b), highlight=False, soft_wrap=not console.is_terminal)
    for t in b.tasks:
        console.print("  " + task_sentence(t, run_dir), highlight=False, soft_wrap=not console.is_terminal)


def print_finished(console: Console, done: Any) -> SearchSummary:
    """A rerun with nothing left to do (:class:`automtl.rundir.resume.FinishedRun`): the run's summary, from its files."""
    from automtl.rundir.baselines import Baselines
    from automtl.rundir.ensemble import EnsembleResult

    run = done.run
    finished = sum(r.state in ("complete", "pruned") for r in run.records)
    console.print(f"nothing left to do: the study holds {finished} finished trial(s) of {done.target}, and best/"
                  + (", ensemble/" if done.ensemble_dir else "") + (", the baselines" if run.baselines else "")
                  + (" and the report" if done.report else "") + " are up to date; give more --trials to search on",
                  highlight=False, soft_wrap=not console.is_terminal)
    summary = SearchSummary(done.run_dir, run.records, done.best, done.run_dir / "best", report=done.report,
                            baselines=Baselines.from_json(run.baselines) if run.baselines else None,
                            ensemble=EnsembleResult.from_json(run.ensemble) if run.ensemble else None,
                            ensemble_dir=done.ensemble_dir, tasks=run.tasks)
    print_summary(console, summary, run.primaries)
    return summary
