"""What a search shows while it runs: live bars on a terminal, plain lines otherwise."""

from __future__ import annotations

from typing import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from automtl.core.trial import TrialRecord
from automtl.run.fidelity import label
from automtl.rundir.choices import short_params


def primary_metrics(record: TrialRecord, primaries: dict[str, str]) -> str:
    parts = []
    for task, metric in primaries.items():
        value = record.metrics.get(f"{task}.{metric}")
        if value is not None:
            parts.append(f"{task}.{metric}={value:.4g}")
    return " ".join(parts)


class SearchProgress:
    """Trial-level and epoch-level progress; quiet mode prints only the summary."""

    def __init__(self, console: Console, primaries: dict[str, str], epochs: int, quiet: bool = False) -> None:
        self.console = console
        self.primaries = primaries
        self.epochs = epochs
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.best: float | None = None
        self._progress: Progress | None = None
        #: under a time budget: the time left for trials and how many more fit, from the finished trials
        self.budget_note: Callable[[Sequence[TrialRecord]], str] | None = None

    def start(self, total: int | None, done: int) -> None:
        """``total`` None: as many trials as the time budget allows (the bar counts without an end)."""
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console, transient=True,
        )
        self._trials = self._progress.add_task("trials", total=total, completed=done, info="")
        self._epoch = self._progress.add_task("epochs", total=self.epochs, info="")
        self._progress.start()

    def epoch(self, number: int, epoch: int, objective: float) -> None:
        if self._progress is not None:
            self._progress.update(self._epoch, completed=epoch, description=f"trial {number}",
                                  info=f"score {objective:.4f}")

    def trial(self, record: TrialRecord, records: Sequence[TrialRecord] = ()) -> None:
        """One finished trial; ``records``: the study's finished trials, this one included (for the budget note)."""
        is_best = record.ok and (self.best is None or record.score > self.best)
        if is_best:
            self.best = record.score
        note = self.budget_note(records) if self.budget_note is not None else ""
        if self._progress is not None:
            info = "  ".join(x for x in ("" if self.best is None else f"best {self.best:.4f}", note) if x)
            self._progress.update(self._trials, advance=1, info=info)
            self._progress.reset(self._epoch, total=self.epochs)
        if self.quiet:
            return
        if record.ok:
            status = f"score {record.score:.4f}  {primary_metrics(record, self.primaries)}"
            if record.reason:  # e.g. stopped early by the time budget
                status += f"  [yellow]({record.reason})[/]"
        else:
            status = f"{record.state}: {record.reason}" if record.reason else record.state
        took = f"{record.duration_s:.1f}s" if record.duration_s is not None else ""
        status += fidelity_note(record)
        mark = "  [bold green]new best[/]" if is_best else ""
        # Logs and pipes get one plain line per trial, never wrapped at 80 columns.
        budget = f"  [dim]\\[{note}][/]" if note else ""
        self.console.print(f"trial {record.number:>3}  {status}  [dim]({short_params(record.params)}; {took})[/]{mark}"
                           f"{budget}", highlight=False, soft_wrap=not self.console.is_terminal)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def fidelity_note(record: TrialRecord) -> str:
    """``  [1/9 of the rows]`` for a multi-fidelity trial, with the trial it was promoted from."""
    if record.fidelity >= 1.0 and record.parent is None:
        return ""
    rows = "all rows" if record.fidelity >= 1.0 else f"{label(record.fidelity)} of the rows"
    return f"  [cyan]\\[{rows}" + (f", promoted from trial {record.parent}" if record.parent is not None else "") + "][/]"


def leaderboard_table(records: Sequence[TrialRecord], primaries: dict[str, str], chance: str = "") -> RichTable:
    """The best trials, one column per task's metric; ``chance``: the chance level, shown in the title."""
    table = RichTable(title="Leaderboard" + (f" ({chance} on the validation rows)" if chance else ""),
                      title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    pareto = any(r.pareto is not None for r in records)
    if pareto:
        table.add_column("front")  # on the Pareto front of a multi-objective run
    for task, metric in primaries.items():
        table.add_column(f"{task}.{metric}", justify="right", no_wrap=True)  # never "income.accu…"
    table.add_column("params")
    table.add_column("time", justify="right")
    for rank, r in enumerate(records, 1):
        cells = [str(rank), str(r.number), f"{r.score:.4f}"] + (["*" if r.pareto else ""] if pareto else [])
        cells += [f"{r.metrics.get(f'{t}.{m}', float('nan')):.4g}" for t, m in primaries.items()]
        cells += [short_params(r.params), f"{r.duration_s or 0:.1f}s"]
        table.add_row(*cells)
    return table
