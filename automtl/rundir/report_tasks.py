"""The report's per-task plots on the validation rows: the best trial and the ensemble side by side.

Read from ``RUN_DIR/diagnostics.json`` (written by the search, see
:mod:`automtl.run.diagnostics`): a confusion matrix and per-class precision
and recall for classification, predicted against actual values and the
residuals for regression, a precision-recall curve per class for detection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

#: Written by the search beside trials.json.
DIAGNOSTICS = "diagnostics.json"


def task_sections(run_dir: Path, section: Callable[..., Any]) -> list[Any]:
    """One section per task and plot (``section(title, figure=..., note=...)`` makes one); none
    without ``diagnostics.json`` (a cross-validated run, or one from before it existed)."""
    try:
        doc = json.loads((Path(run_dir) / DIAGNOSTICS).read_text())
    except (OSError, ValueError):
        return []
    models = doc.get("models") or []
    if not models:
        return []
    names = [m["name"] for m in models]
    out = []
    for task in models[0]["tasks"]:
        figures = [m["tasks"].get(task) or {} for m in models]
        kind = figures[0].get("kind")
        where = f"'{task}' on the {doc.get('rows', '')} validation rows: {' | '.join(names)}"
        if kind == "classes":
            if figures[0].get("confusion") is not None:
                out.append(section(f"Confusion matrix of {where}", figure=_confusion(figures, names)))
            out.append(section(f"Precision and recall per class of {where}", figure=_per_class(figures, names)))
        elif kind == "values":
            out.append(section(f"Predicted vs actual, and residuals, of {where}", figure=_values(figures, names)))
        elif kind == "pr":
            out.append(section(f"Precision-recall per class (IoU 0.5) of {where}", figure=_pr(figures, names)))
    return out


def _confusion(figures: list[dict], names: list[str]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(figures), subplot_titles=names)
    for i, f in enumerate(figures, 1):
        classes = f["classes"]
        fig.add_trace(go.Heatmap(z=f["confusion"], x=classes, y=classes, colorscale="Blues", showscale=i == 1,
                                 text=f["confusion"], texttemplate="%{text}",
                                 hovertemplate="true %{y}, predicted %{x}: %{z} rows<extra></extra>"), row=1, col=i)
        fig.update_xaxes(title_text="predicted", row=1, col=i)
        fig.update_yaxes(title_text="true", autorange="reversed", row=1, col=i)
    fig.update_layout(height=380)
    return fig


def _per_class(figures: list[dict], names: list[str]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for f, name in zip(figures, names):
        for metric in ("precision", "recall"):
            fig.add_trace(go.Bar(name=f"{metric} ({name})", x=f["classes"], y=f[metric]))
    fig.update_layout(barmode="group", height=340, yaxis={"range": [0, 1], "title": "on the validation rows"})
    return fig


def _values(figures: list[dict], names: list[str]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    targets = figures[0]["targets"]
    fig = make_subplots(rows=2, cols=len(figures), subplot_titles=[*names, *(f"residuals: {n}" for n in names)])
    for i, f in enumerate(figures, 1):
        for j, target in enumerate(targets):
            actual, predicted = f["actual"][j], f["predicted"][j]
            fig.add_trace(go.Scattergl(x=actual, y=predicted, mode="markers", name=f"{target} ({names[i - 1]})",
                                       marker={"size": 4, "opacity": 0.6}), row=1, col=i)
            fig.add_trace(go.Scattergl(x=predicted, y=[a - p for a, p in zip(actual, predicted)], mode="markers",
                                       name=f"{target} residuals ({names[i - 1]})", showlegend=False,
                                       marker={"size": 4, "opacity": 0.6}), row=2, col=i)
            if actual:
                lo, hi = min(actual + predicted), max(actual + predicted)
                fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "grey"},
                                         showlegend=False, hoverinfo="skip"), row=1, col=i)
        fig.update_xaxes(title_text="actual", row=1, col=i)
        fig.update_yaxes(title_text="predicted", row=1, col=i)
        fig.update_xaxes(title_text="predicted", row=2, col=i)
        fig.update_yaxes(title_text="actual - predicted", row=2, col=i)
    fig.update_layout(height=640)
    return fig


def _pr(figures: list[dict], names: list[str]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(figures), subplot_titles=names)
    for i, f in enumerate(figures, 1):
        if not f:
            continue
        for cls, curve in zip(f["classes"], f["precision"]):
            fig.add_trace(go.Scatter(x=f["recall"], y=curve, mode="lines", name=f"{cls} ({names[i - 1]})"),
                          row=1, col=i)
        fig.update_xaxes(title_text="recall", range=[0, 1], row=1, col=i)
        fig.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=i)
    fig.update_layout(height=380)
    return fig
