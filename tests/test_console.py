"""Output for logs and terminals: nothing wrapped or cut in a file, tables that fit a terminal, paths as given."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.console import Console

from automtl.console import make_console, print_table, shown
from automtl.core.trial import TrialRecord
from automtl.run.progress import leaderboard_table
from automtl.run.summary import LEADERBOARD_DROP

PRIMARIES = {"income": "accuracy", "occupation": "accuracy", "hours": "rmse"}


def records() -> list[TrialRecord]:
    params = {"strategy": "alternating", "trunk.depth": 3, "trunk.units": 256, "learning_rate": 0.00123,
              "sharing": "mmoe", "experts": 4, "weighting": "uncertainty", "trunk.dropout": 0.25}
    return [TrialRecord(n, "complete", 0.8 - n / 100, params,
                        {"income.accuracy": 0.85, "occupation.accuracy": 0.31, "hours.rmse": 11.2}, 12.5)
            for n in range(3)]


def test_a_log_gets_whole_lines_and_whole_tables(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    console = make_console()  # pytest's stdout is not a terminal
    out = io.StringIO()
    console.file = out
    long_line = "automtl search 'x': " + "a phrase that must not break " * 10
    console.print(long_line, highlight=False)
    print_table(console, leaderboard_table(records(), PRIMARIES), drop=LEADERBOARD_DROP)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert long_line.rstrip() in lines  # one line, not wrapped at 80 columns
    header = next(line for line in lines if "income.accuracy" in line)
    for column in ("rank", "trial", "score", "occupation.accuracy", "hours.rmse", "params", "time"):
        assert column in header, header  # no header cut ("income.accu…"), no column dropped
    rows = [line for line in lines if "alternating" in line]
    assert len(rows) == 3  # one line per trial: the params cell is not wrapped over 4-5 lines
    assert "…" not in out.getvalue()


def test_a_narrow_terminal_drops_low_value_columns_before_cutting_a_metric():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    print_table(console, leaderboard_table(records(), PRIMARIES), drop=LEADERBOARD_DROP)
    text = out.getvalue()
    for header in ("income.accuracy", "occupation.accuracy", "hours.rmse"):
        assert header in text, text
    assert " time " not in text and " rank " not in text  # dropped first
    assert max(len(line) for line in text.splitlines()) <= 100


def test_paths_print_as_given_or_absolute(tmp_path, monkeypatch):
    inside = tmp_path / "work"
    (inside / "runs" / "x").mkdir(parents=True)
    monkeypatch.chdir(inside)
    assert shown(inside / "runs" / "x" / "best") == os.path.join("runs", "x", "best")
    outside = tmp_path / "elsewhere" / "run" / "best"
    assert shown(outside) == str(outside) and ".." not in shown(outside)
    assert shown(Path("runs/x")) == os.path.join("runs", "x")


def test_plugins_in_a_log_keeps_its_object_column_whole(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("plugins")
    assert result.exit_code == 0, result.output
    assert "automtl_tabular:TabularInput" in result.output  # the object column, uncut
    assert "…" not in result.output
