"""``automtl trials RUN_DIR``: the leaderboard, sorted by the objective or any task metric."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from rich.table import Table as RichTable

from automtl.core.trial import TrialRecord
from automtl.errors import AutomtlError
from automtl.rundir import chance
from automtl.rundir.choices import all_params, short_params
from automtl.rundir.results import RunTrials, finite

#: Metric names where lower is better, for sorting by a metric that is not a task's primary one.
LOWER_IS_BETTER = ("loss", "log_loss", "rmse", "mse", "mae", "error", "latency_ms")


def sort_keys(run: RunTrials) -> list[str]:
    """Everything ``--sort`` accepts: score, a task name (its score) and every metric column."""
    metrics = sorted({k for r in run.records for k in r.metrics})
    return ["score", *[t["name"] for t in run.tasks], *metrics]


def descending(run: RunTrials, key: str) -> bool:
    """Best first: the task's own direction for its primary metric, else a name-based guess."""
    if key == "score" or key in {t["name"] for t in run.tasks}:
        return True
    task, _, metric = key.partition(".")
    for t in run.tasks:
        if t["name"] == task and t.get("primary_metric") == metric:
            return t.get("direction", "maximize") == "maximize"
    return (metric or key) not in LOWER_IS_BETTER


def value_of(record: TrialRecord, key: str, tasks: set[str]) -> float | None:
    if key == "score":
        return record.score
    if key in tasks:
        return record.scores.get(key)
    return record.metrics.get(key)


def select(run: RunTrials, sort: str = "score", ascending: bool | None = None,
           include_all: bool = False) -> list[TrialRecord]:
    """Trials ordered best first by ``sort``; unfinished or failed ones only with ``include_all``."""
    keys = sort_keys(run)
    if sort not in keys:
        raise AutomtlError(f"--sort '{sort}' is not a column of this run; choose one of: {', '.join(keys)}")
    tasks = {t["name"] for t in run.tasks}
    desc = descending(run, sort) if ascending is None else not ascending
    records = run.records if include_all else [r for r in run.records if r.ok]

    def key(r: TrialRecord) -> tuple[int, float]:
        v = value_of(r, sort, tasks)
        if v is None or not math.isfinite(v):
            return (1, 0.0)  # missing values last, whatever the order
        return (0, -v if desc else v)

    return sorted(records, key=lambda r: (key(r), r.number))


#: The columns a narrow terminal loses first (before rich shortens any cell).
DROP = ("time", "rank", "front", "params")


def table(run: RunTrials, records: Sequence[TrialRecord], sort: str, show_state: bool = False,
          every_param: bool = False) -> RichTable:
    pareto = any(r.pareto is not None for r in run.records)
    primaries = [f"{t}.{m}" for t, m in run.primaries.items()]
    extra = [sort] if sort not in ("score", *primaries, *run.primaries) else []
    title = f"Trials of '{run.experiment}' by {sort}" + (" (pareto objective)" if pareto else "")
    if chance.header(run.tasks):
        title += f"; {chance.header(run.tasks)} on the validation rows"
    out = RichTable(title=title, title_justify="left")
    for col in ("rank", "trial", *(["state"] if show_state else []), "score", *(["front"] if pareto else []),
                *primaries, *extra):
        # numbers and their headers never wrap; the parameters column takes what is left
        out.add_column(col, justify="left" if col in ("state", "front") else "right", no_wrap=True)
    out.add_column("params", ratio=1)
    out.add_column("time", justify="right", no_wrap=True)
    if run.ensemble and sort in ("score", *primaries, *run.primaries):
        # the ensemble, beside the trials: the same columns, on the validation rows
        e = run.ensemble
        members = ", ".join(f"#{m['trial']}" for m in e["members"])
        cells = ["", "ensemble", *([""] if show_state else []), _num(e.get("score"))]
        if pareto:
            cells.append("")
        cells += [_num(e.get("metrics", {}).get(c)) for c in (*primaries, *extra)]
        cells += [f"{len(e['members'])} models: {members}", ""]
        out.add_row(*cells, style="bold")
    for rank, r in enumerate(records, 1):
        cells = [str(rank), str(r.number), *([r.state] if show_state else []), _num(r.score)]
        if pareto:
            cells.append("*" if r.pareto else "")
        cells += [_num(r.metrics.get(c)) for c in (*primaries, *extra)]
        cells += [all_params(r.params) if every_param else short_params(r.params), f"{r.duration_s or 0:.1f}s"]
        out.add_row(*cells)
    return out


def extras(run: RunTrials, run_dir: str) -> list[str]:
    """Lines under the table: the ensemble beside the best trial, the baselines and delta-m."""
    lines = []
    best = next(iter(select(run)), None)
    lines += [f"chance level of {line} (validation rows)" for line in chance.lines(run.tasks, best)]
    lines += [f"warning: {w}" for w in chance.shortfalls(run.tasks, best)]
    if run.ensemble:
        e = run.ensemble
        best = e.get("best_single", {})
        lines.append(f"ensemble score {_num(e.get('score'))} vs best single trial #{best.get('trial')} "
                     f"{_num(best.get('score'))} ({(e.get('score') or 0) - (best.get('score') or 0):+.4f}); "
                     f"served from {run_dir}/ensemble")
    if run.baselines:
        from automtl.rundir.baselines import Baselines, summary_sentence, task_sentence

        b = Baselines.from_json(run.baselines)
        lines.append(f"single-task baselines ({b.mode}, against trial #{b.best_trial}): " + summary_sentence(b))
        lines += ["  " + task_sentence(t, run_dir) for t in b.tasks]
    return lines


def as_json(run: RunTrials, records: Sequence[TrialRecord]) -> str:
    """Strict JSON (no NaN) for scripts: the run's tasks and the selected trials in order."""
    import dataclasses

    doc: dict[str, Any] = {
        "experiment": run.experiment,
        "objective": run.objective,
        "tasks": run.tasks,
        **({"ensemble": run.ensemble} if run.ensemble else {}),
        **({"baselines": run.baselines} if run.baselines else {}),
        "trials": [finite(dataclasses.asdict(r)) for r in records],
    }
    return json.dumps(doc, indent=1, allow_nan=False, default=str)


def _num(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"
