"""``RUN_DIR/report.html``: what a search did, in one self-contained page that works offline.

The plots are Optuna's own (``optuna.visualization``: history, importances,
parallel coordinates, intermediate values, Pareto front); only the best
trial's per-task training curves, which Optuna does not keep, are drawn here
from ``trials/<n>/history.json``. plotly.js is embedded once, inline.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from automtl.core import registry
from automtl.core.trial import TrialRecord, trial_dir
from automtl.rundir import chance
from automtl.rundir.choices import short_params
from automtl.rundir.folder import backend_name, disk_use, raw_snapshot, study_location
from automtl.rundir.report_tasks import task_sections
from automtl.rundir.results import RunTrials, leaderboard, read_trials

LEADERBOARD_ROWS = 20


@dataclass
class Section:
    """One titled block of the page: a plotly figure, or a note saying why there is none."""

    title: str
    figure: Any = None
    note: str = ""


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) and return its path."""
    run_dir = Path(run_dir)
    run = read_trials(run_dir)
    study = load_study(run_dir, run)
    cosines = gradient_cosines(run_dir, run)
    sections = (optuna_sections(study, run) + [training_curves(run_dir, run)] + ([cosines] if cosines else [])
                + task_sections(run_dir, Section))
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(render(run_dir, run, sections))
    return out


# -- the study --------------------------------------------------------------------------------
def load_study(run_dir: Path, run: RunTrials) -> Any:
    """The run's stored study (its backend's :class:`~automtl.backends.base.StudyStore` opens it);
    where there is none, or it cannot be opened, one rebuilt in memory from ``trials.json``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = registry.member("backend", backend_name(run_dir)).study_store()
    storage, name = study_location(run_dir)
    if storage is not None:
        try:
            study = store.open_study(storage, name)
            if study is not None:
                return study
        except Exception as exc:  # noqa: BLE001 - a moved or deleted study file
            warnings.warn(f"cannot open study {name} in {store.redact(storage)} ({exc}); rebuilding it from trials.json")
    return rebuild_study(run_dir, run, store)


def rebuild_study(run_dir: Path, run: RunTrials, store: Any) -> Any:
    """An in-memory Optuna study holding the run's trials, with distributions from ``space.yaml``
    (``store``: the run's backend's :class:`~automtl.backends.base.StudyStore`, which builds it)."""
    import yaml

    from automtl.space import load_space

    tasks = [t["name"] for t in run.tasks]
    names = {k for r in run.records for k in r.params}
    # plugin parameters no trial drew (a conditional one, say) are still known: they are in the file
    raw = yaml.safe_load((Path(run_dir) / "space.yaml").read_text())
    sections = [raw.get(key) for key in ("parameters", "per_task")] if isinstance(raw, dict) else []
    names |= {str(k) for section in sections if isinstance(section, dict) for k in section}
    space = load_space(Path(run_dir) / "space.yaml", tasks, names)
    epochs = {r.number: _epoch_scores(run_dir, r.number) for r in run.records}
    return store.rebuild(space, run.records, tasks, run.objective == "pareto", epochs)


def _epoch_scores(run_dir: Path, number: int) -> dict[int, float]:
    """A kept trial's validation objective per epoch (what Optuna's intermediate values hold)."""
    path = trial_dir(run_dir, number) / "history.json"
    if not path.exists():
        return {}
    rows = json.loads(path.read_text())
    return {int(h["epoch"]): float(h["objective"]) for h in rows
            if isinstance(h.get("objective"), (int, float)) and math.isfinite(h["objective"])}


# -- the figures ------------------------------------------------------------------------------
def optuna_sections(study: Any, run: RunTrials) -> list[Section]:
    import optuna.visualization as vis

    pareto = len(study.directions) > 1
    mean: dict[str, Any] = {}
    if pareto:  # history, importances and coordinates follow the mean score; the front shows each task
        mean = {"target": lambda t: t.user_attrs.get("score", float("nan")), "target_name": "mean score"}
    else:
        mean = {"target_name": "score"}
    from optuna.trial import TrialState

    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    importances = (_section("Parameter importances", lambda: vis.plot_param_importances(study, **mean)) if done >= 2
                   else Section("Parameter importances", note="needs at least two completed trials"))
    sections = [
        _section("Optimisation history", lambda: vis.plot_optimization_history(study, **mean)),
        importances,
        _section("Parallel coordinates", lambda: vis.plot_parallel_coordinate(study, **mean)),
    ]
    if pareto:
        names = [t["name"] for t in run.tasks]
        if len(names) <= 3:
            sections.append(_section("Pareto front (task scores, higher is better)",
                                     lambda: vis.plot_pareto_front(study, target_names=names)))
        else:  # Optuna draws 2 or 3 axes: one plot per pair of tasks
            for i in range(len(names)):
                for j in range(i + 1, len(names)):
                    sections.append(_section(
                        f"Pareto front: {names[i]} vs {names[j]}",
                        lambda i=i, j=j: vis.plot_pareto_front(study, targets=lambda t: (t.values[i], t.values[j]),
                                                               target_names=[names[i], names[j]])))
    else:
        sections.append(_section("Validation score per epoch (all trials)",
                                 lambda: vis.plot_intermediate_values(study)))
    return sections


def _section(title: str, make: Callable[[], Any]) -> Section:
    """Optuna refuses some plots on small studies (one trial, one value); say so instead."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = make()
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return Section(title, note=f"not available for this run: {exc}")
    if not fig.data:
        return Section(title, note="not available for this run: not enough completed trials")
    return Section(title, fig)


def training_curves(run_dir: Path, run: RunTrials) -> Section:
    """The best trial's per-epoch training loss and validation metrics, one row per task."""
    best = leaderboard(run.records, top=1)
    title = "Training curves of the best trial"
    if not best:
        return Section(title, note="no completed trial")
    path = trial_dir(run_dir, best[0].number) / "history.json"
    if not path.exists():
        return Section(title, note=f"{path} not found")
    history: list[dict[str, float]] = json.loads(path.read_text())
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = [t["name"] for t in run.tasks]
    titles = [f"{t}: {kind}" for t in tasks for kind in ("training loss", "validation metrics")]
    fig = make_subplots(rows=len(tasks), cols=2, subplot_titles=titles, vertical_spacing=0.3 / max(1, len(tasks)))
    epochs = [h["epoch"] for h in history]
    for row, task in enumerate(tasks, 1):
        loss = [h.get(f"loss.{task}") for h in history]
        fig.add_trace(go.Scatter(x=epochs, y=loss, mode="lines+markers", name=f"{task} loss",
                                 legendgroup=task), row=row, col=1)
        metrics = sorted({k for h in history for k in h if k.startswith(f"{task}.")} - {f"{task}.labelled"})
        for key in metrics:
            fig.add_trace(go.Scatter(x=epochs, y=[h.get(key) for h in history], mode="lines+markers", name=key,
                                     legendgroup=task), row=row, col=2)
        if best[0].best_epoch:
            for col in (1, 2):
                fig.add_vline(x=best[0].best_epoch, line_dash="dot", line_color="grey", row=row, col=col)
    fig.update_xaxes(title_text="epoch", dtick=max(1, math.ceil(len(epochs) / 10)))
    fig.update_layout(height=320 * len(tasks) + 80, title=f"Trial {best[0].number} (dotted line: kept epoch)")
    return Section(title, fig)


def gradient_cosines(run_dir: Path, run: RunTrials) -> Section | None:
    """Cosine between the task gradients on the shared layers per epoch: do the tasks help or fight?

    Weightings that compute one gradient per task (PCGrad, CAGrad, DB-MTL) record it in ``history.json``;
    the plot shows the best trial, or the best trial that has it when the best used another weighting.
    None when no kept trial has it (no section).
    """
    for record in leaderboard(run.records, top=len(run.records)):
        path = trial_dir(run_dir, record.number) / "history.json"
        history = json.loads(path.read_text()) if path.exists() else []
        if any("grad_cosine" in h for h in history):
            break
    else:
        return None
    best = leaderboard(run.records, top=1)[0]
    import plotly.graph_objects as go

    epochs = [h["epoch"] for h in history]
    pairs = sorted({k for h in history for k in h if k.startswith("grad_cosine.")})
    tasks = [t["name"] for t in run.tasks]
    fig = go.Figure()
    for key in pairs:
        fig.add_trace(go.Scatter(x=epochs, y=[h.get(key) for h in history], mode="lines+markers",
                                 name=_pair_name(key[len("grad_cosine."):], tasks)))
    fig.add_trace(go.Scatter(x=epochs, y=[h.get("conflict_share") for h in history], mode="lines",
                             line={"dash": "dot"}, name="share of steps with a conflict"))
    fig.add_hline(y=0, line_color="grey")
    which = (f"trial {record.number}" if record.number == best.number else
             f"trial {record.number} (the best trial, {best.number}, used weighting "
             f"'{best.params.get('weighting', best.params.get('strategy', '?'))}', which computes no per-task gradients)")
    fig.update_layout(title=f"{which}, weighting {record.params.get('weighting')}: cosine > 0 the tasks agree, "
                            "< 0 they conflict", yaxis={"range": [-1.05, 1.05], "title": "mean cosine"},
                      xaxis={"title": "epoch", "dtick": max(1, math.ceil(len(epochs) / 10))}, height=420)
    return Section("Task-gradient cosine per epoch", fig)


def _pair_name(key: str, tasks: Sequence[str]) -> str:
    """``a.b`` -> ``a vs b``, splitting at the dot that separates two task names (names may hold dots)."""
    for t in tasks:
        if key.startswith(f"{t}.") and key[len(t) + 1:] in tasks:
            return f"{t} vs {key[len(t) + 1:]}"
    return key


# -- the page ---------------------------------------------------------------------------------
def render(run_dir: Path, run: RunTrials, sections: Sequence[Section]) -> str:
    from plotly.offline import get_plotlyjs

    raw = raw_snapshot(run_dir)
    search = raw.get("search") or {}
    counts: dict[str, int] = {}
    for r in run.records:
        counts[r.state] = counts.get(r.state, 0) + 1
    board = leaderboard(run.records, top=LEADERBOARD_ROWS)
    e = html.escape
    summary = (
        f"{len(run.records)} trials ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
        f"backend {e(str(search.get('backend', '')))}/{e(str(search.get('algorithm', '')))}; "
        f"objective {e(run.objective)}; tasks "
        + ", ".join(f"{e(t['name'])} ({e(str(t.get('type', '')))}, {e(t['primary_metric'])})" for t in run.tasks)
        + (f"; {e(chance.header(run.tasks))} on the validation rows" if chance.header(run.tasks) else "")
    )
    figures = []
    for i, s in enumerate(sections):
        if s.figure is None:
            body = f'<p class="note">{e(s.note)}</p>'
        else:
            body = s.figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{i}",
                                    config={"displaylogo": False, "responsive": True})
        figures.append(f'<section class="plot"><h2>{e(s.title)}</h2>{body}</section>')
    return PAGE.format(
        title=e(f"automtl report: {run.experiment}"),
        plotlyjs=get_plotlyjs(),
        summary=summary,
        created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        run_dir=e(str(Path(run_dir).resolve())),
        best=best_block(run, board[0] if board else None),
        ensemble=ensemble_block(run),
        baselines=baselines_block(run, str(run_dir)),
        leaderboard=leaderboard_html(run, board),
        figures="\n".join(figures),
        disk=e(disk_use(run_dir).describe()),
    )


def best_block(run: RunTrials, best: TrialRecord | None) -> str:
    e = html.escape
    if best is None:
        return "<p>No trial completed.</p>"
    rows = []
    for t in run.tasks:
        name = t["name"]
        metrics = {k.split(".", 1)[1]: v for k, v in best.metrics.items() if k.startswith(f"{name}.")}
        cells = ", ".join(f"{'<b>' if m == t['primary_metric'] else ''}{e(m)} {_num(v)}"
                          f"{'</b>' if m == t['primary_metric'] else ''}" for m, v in sorted(metrics.items()))
        ref = t.get("reference") or {}
        chance_cell = (f"{e(ref['metric'])} {_num(ref.get('value'))} ({e(ref.get('label', ''))})" if ref else "n/a")
        rows.append(f"<tr><td>{e(name)}</td><td>{_num(best.scores.get(name))}</td><td>{cells}</td>"
                    f"<td>{chance_cell}</td></tr>")
    params = "".join(f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in sorted(best.params.items()))
    front = " (on the Pareto front)" if best.pareto else ""
    warnings = "".join(f'<p class="note"><b>warning:</b> {e(w)}</p>' for w in chance.shortfalls(run.tasks, best))
    return (
        f"<p>Trial <b>#{best.number}</b>{front}: score <b>{_num(best.score)}</b>, kept epoch {best.best_epoch}, "
        f"{_num(best.duration_s)} s on {e(best.device)}.</p>" + warnings +
        '<div class="cols"><table><caption>Per-task metrics (validation)</caption>'
        "<tr><th>task</th><th>score</th><th>metrics</th><th>chance level</th></tr>" + "".join(rows) + "</table>"
        "<table><caption>Parameters</caption><tr><th>parameter</th><th>value</th></tr>" + params + "</table></div>"
    )


def ensemble_block(run: RunTrials) -> str:
    """The ensemble's members, weights and per-task figures beside the best single trial's."""
    e = html.escape
    ens = run.ensemble
    if not ens:
        return ""
    best = ens.get("best_single", {})
    members = "".join(
        f"<tr><td>{e(task)}</td><td>" + ", ".join(f"#{m['trial']} ({_num(m.get('weight'))})" for m in ms) + "</td></tr>"
        for task, ms in (ens.get("tasks") or {}).items())
    best_record = next((r for r in run.records if r.number == best.get("trial")), None)
    rows = []
    for t in run.tasks:
        key = f"{t['name']}.{t['primary_metric']}"
        single = best_record.metrics.get(key) if best_record else None
        rows.append(f"<tr><td>{e(key)}</td><td>{_num(single)}</td><td>{_num(ens.get('metrics', {}).get(key))}</td></tr>")
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in ens.get("notes", []))
    gain = (ens.get("score") or 0.0) - (best.get("score") or 0.0)
    return (
        "<h2>Ensemble</h2>"
        f"<p>Greedy ensemble selection with replacement (Caruana et al., 2004) over the best {ens.get('library')} "
        f"trials, {ens.get('size')} round(s) per task (each task its own members and weights; one SavedModel "
        f"runs the {len(ens.get('members', []))} models once): score <b>{_num(ens.get('score'))}</b> vs the best single trial "
        f"#{best.get('trial')} {_num(best.get('score'))} ({gain:+.4f}) on the validation rows "
        "(the rows selection saw: held-out figures come from <code>bench/ensemble_distill.py</code>). "
        "Served from <code>ensemble/</code>.</p>" + notes +
        '<div class="cols"><table><caption>Members (weight)</caption><tr><th>task</th><th>members</th></tr>'
        + members + "</table>"
        "<table><caption>Primary metrics (validation)</caption><tr><th>metric</th><th>best trial</th>"
        "<th>ensemble</th></tr>" + "".join(rows) + "</table></div>"
    )


def baselines_block(run: RunTrials, run_dir: str) -> str:
    """Did sharing help? Per task, the single-task baseline beside the multi-task model, in words."""
    if not run.baselines:
        return ""
    from automtl.rundir.baselines import Baselines, summary_sentence, task_sentence

    e = html.escape
    b = Baselines.from_json(run.baselines)
    how = ("each task retrained alone with the best trial's configuration (same trunk, its own head, "
           "same epochs, early stopping, seed and split)" if b.mode == "auto"
           else "a single-task search per task on the same space without the multi-task-only parameters")
    rows = "".join(
        f"<tr><td>{e(t.task)}</td><td>{e(t.metric)}</td><td>{_num(t.multi)}</td><td>{_num(t.single)}</td>"
        f"<td>{'-' if t.delta is None else f'{t.delta:+.2f} %'}</td>"
        f"<td>{'-' if t.interval is None else f'{t.interval[0]:+.1f} to {t.interval[1]:+.1f} %'}</td>"
        f"<td>{e(t.verdict)}</td></tr>" for t in b.tasks)
    words = "".join(f"<li>{e(task_sentence(t, run_dir))}</li>" for t in b.tasks)
    return (
        "<h2>Did sharing help? Single-task baselines</h2>"
        f"<p>Baselines: {e(how)}; {b.trainings} training(s), {b.seconds:.0f} s, apart from the search budget. "
        f"<b>{e(summary_sentence(b))}</b></p>"
        "<table><tr><th>task</th><th>metric</th><th>multi-task (trial "
        f"#{b.best_trial})</th><th>single-task</th><th>change</th><th>90 % interval (bootstrap)</th><th>verdict</th></tr>"
        + rows + "</table><ul>" + words + "</ul>"
    )


def leaderboard_html(run: RunTrials, board: Sequence[TrialRecord]) -> str:
    e = html.escape
    pareto = any(r.pareto is not None for r in run.records)
    primaries = [f"{t}.{m}" for t, m in run.primaries.items()]
    head = ["rank", "trial", "score", *(["Pareto front"] if pareto else []), *primaries, "parameters", "time"]
    rows = []
    for rank, r in enumerate(board, 1):
        cells = [str(rank), str(r.number), _num(r.score), *(["&#9733;" if r.pareto else ""] if pareto else [])]
        cells += [_num(r.metrics.get(c)) for c in primaries]
        cells += [e(short_params(r.params)), f"{r.duration_s or 0:.1f}s"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    refs = {f"{t['name']}.{t['reference']['metric']}": t["reference"].get("value") for t in run.tasks
            if t.get("reference")}
    if refs:  # the trivial predictors, beside the trials: did the models learn anything?
        cells = ["", "chance level", "", *([""] if pareto else []), *[_num(refs.get(c)) for c in primaries], "", ""]
        rows.append('<tr class="note">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
h1 {{ margin-bottom: .2rem; }} .meta {{ color: #666; margin-top: 0; }}
table {{ border-collapse: collapse; margin: .5rem 1.5rem 1rem 0; font-size: .9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }}
th {{ background: #f4f4f4; }} td:first-child, th:first-child {{ text-align: left; }}
caption {{ text-align: left; font-weight: bold; padding: .3rem 0; }}
.cols {{ display: flex; flex-wrap: wrap; align-items: flex-start; }}
.note {{ color: #a60; }} section.plot {{ margin-top: 1.5rem; }}
</style>
<script type="text/javascript">{plotlyjs}</script>
</head>
<body>
<h1>{title}</h1>
<p class="meta">{run_dir} &middot; written {created}</p>
<p>{summary}</p>
<h2>Best trial</h2>
{best}
{ensemble}
{baselines}
<h2>Leaderboard</h2>
{leaderboard}
{figures}
<p class="meta">Disk: {disk}.</p>
</body>
</html>
"""
