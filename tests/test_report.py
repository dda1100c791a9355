"""The run report: self-contained HTML whose plots render in a real (headless) browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e

SECTIONS = ["Optimisation history", "Parameter importances", "Parallel coordinates",
            "Validation score per epoch (all trials)", "Training curves of the best trial"]
#: per task on the validation rows, the best trial beside the ensemble (diagnostics.json)
TASK_PLOTS = ["Confusion matrix of &#x27;digit&#x27;", "Precision and recall per class of &#x27;digit&#x27;",
              "Predicted vs actual, and residuals, of &#x27;slant&#x27;"]


def invoke(*args: Any) -> Any:
    from automtl.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def plotly_library() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    return found


def browse(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` offline in headless Chromium, with the page's console on stderr."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing may load from the network
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def script_errors(stderr: str) -> list[str]:
    """Uncaught exceptions and console.error calls of the page."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line and ("Uncaught" in line or "ERROR:CONSOLE" in line)]


@pytest.fixture
def demo_run(digits_run: Path) -> Path:
    """The session's digits run (``conftest.digits_run``): a three-trial search with its report."""
    return digits_run


def test_search_writes_a_self_contained_report(demo_run):
    html = (demo_run / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js is inline, not from a CDN
    assert not re.search(r"<link[^>]+href=\"?https?:", html)
    assert plotly_library() in html  # the library itself is embedded, once
    assert html.count("Plotly.newPlot(") - plotly_library().count("Plotly.newPlot(") == len(SECTIONS) + len(TASK_PLOTS)
    for title in ["Best trial", "Leaderboard", *SECTIONS]:
        assert f">{title}<" in html, title
    for title in TASK_PLOTS:
        assert f">{title} on the " in html and " validation rows: best trial #" in html, title
    assert "digit.accuracy" in html and "slant.rmse" in html
    assert "per trial" in html  # disk use of the kept trial models


def test_report_renders_in_headless_chromium(demo_run, tmp_path):
    page = demo_run / "report.html"
    dom = browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert script_errors(dom.stderr) == []
    plots = re.split(r'id="plot-(\d+)"', dom.stdout)[1:]
    assert len(plots) // 2 == len(SECTIONS) + len(TASK_PLOTS)
    for number, body in zip(plots[::2], plots[1::2]):
        block = body.split("<section")[0]
        assert 'class="main-svg"' in block, f"plot {number} was not drawn"  # plotly built its SVG
        assert "<path" in block or "<rect" in block
    shot = tmp_path / "report.png"
    run = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1300,5200")
    assert run.returncode == 0 and shot.stat().st_size > 50_000


def test_script_error_detection_can_fail(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert script_errors(browse(page, tmp_path, "--dump-dom").stderr)


def test_report_command_rebuilds_the_study_for_other_backends(demo_run, tmp_path):
    """Keras Tuner runs have no Optuna study: the plots come from trials.json and space.yaml."""
    copy = tmp_path / "kt"
    shutil.copytree(demo_run, copy, ignore=shutil.ignore_patterns("study.db", "best", "report.html"))
    snapshot = copy / "experiment.resolved.yaml"
    snapshot.write_text(snapshot.read_text().replace("backend: optuna", "backend: keras-tuner"))
    result = invoke("report", copy, "--out", tmp_path / "kt.html")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "kt.html").read_text()
    for title in SECTIONS[:3]:
        assert f">{title}<" in html
    assert html.count("Plotly.newPlot(") - plotly_library().count("Plotly.newPlot(") == len(SECTIONS) + len(TASK_PLOTS)
    plots = re.findall(r'<section class="plot">.*?</section>', html, re.S)
    assert plots and not any('class="note"' in p for p in plots)  # every plot drawn, none replaced by a note


def test_small_study_gets_notes_not_a_crash():
    import optuna

    from automtl.rundir.report import optuna_sections
    from automtl.rundir.results import RunTrials

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.01}, distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)}, value=0.5))
    sections = optuna_sections(study, RunTrials([], [{"name": "a", "primary_metric": "m"}]))
    importances = next(s for s in sections if s.title == "Parameter importances")
    assert importances.figure is None and "at least two completed trials" in importances.note
    assert next(s for s in sections if s.title == "Optimisation history").figure is not None
    failed = optuna.create_study(direction="maximize")
    failed.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    notes = optuna_sections(failed, RunTrials([], [{"name": "a", "primary_metric": "m"}]))
    assert all(s.figure is None and s.note for s in notes)


def test_report_of_a_missing_run_is_a_clear_error(tmp_path):
    result = invoke("report", tmp_path / "nope")
    assert result.exit_code == 2 and "run folder not found" in result.output
