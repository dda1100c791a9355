"""Multi-fidelity by rows: cheap trials on a ninth of the rows, the best third promoted, only the top rung ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from automtl.core.trial import TrialRecord, top_fidelity
from automtl.data.subsample import subsample
from automtl.errors import ConfigError
from automtl.config import fidelity_obstacle as obstacle
from automtl.run.fidelity import AUTO_MIN_ROWS, RUNGS, describe, label, last_call, promotions, rungs_for


def _rec(number: int, score: float | None, fidelity: float, parent: int | None = None,
         state: str = "complete") -> TrialRecord:
    return TrialRecord(number, state, score, {"n": number}, {}, 1.0, fidelity=fidelity, parent=parent)


def test_the_top_third_of_a_rung_is_promoted_once_each():
    low = RUNGS[0]
    two = [_rec(0, 0.5, low), _rec(1, 0.7, low)]
    assert promotions(two, RUNGS) == []  # fewer than 3 finished: nothing proved itself yet
    three = two + [_rec(2, 0.6, low)]
    assert [(r.number, f) for r, f in promotions(three, RUNGS)] == [(1, RUNGS[1])]
    queued = three + [_rec(3, None, RUNGS[1], parent=1, state="waiting")]
    assert promotions(queued, RUNGS) == []  # trial 1 is taken (queued), 2 is not in the top third of 3
    six = queued + [_rec(4, 0.9, low), _rec(5, 0.1, low), _rec(6, None, low, state="pruned")]
    assert [(r.number, f) for r, f in promotions(six, RUNGS)] == [(4, RUNGS[1])]  # top 2 of 6: 4 and 1
    # pruned trials reached the rung too: 6 finished, 2 completed above them; the top third is 3 trials
    pruned = [_rec(0, 0.5, low), _rec(1, 0.7, low)] + [_rec(n, None, low, state="pruned") for n in range(2, 9)]
    assert [(r.number, f) for r, f in promotions(pruned, RUNGS)] == [(1, RUNGS[1]), (0, RUNGS[1])]


def test_the_highest_rung_promotes_first_and_full_rows_end_the_ladder():
    low, mid = RUNGS[0], RUNGS[1]
    records = [_rec(i, 0.1 * i, low) for i in range(9)]
    records += [_rec(10, 0.5, mid, parent=8), _rec(11, 0.6, mid, parent=7), _rec(12, 0.7, mid, parent=5)]
    out = [(r.number, f) for r, f in promotions(records, RUNGS)]
    assert out == [(12, 1.0), (6, mid)]  # the best of 1/3 to all rows first; 8 and 7 were taken, 6 was not
    records.append(_rec(20, 0.99, 1.0, parent=12))  # all rows is the last rung: 20 goes nowhere
    assert [(r.number, f) for r, f in promotions(records, RUNGS)] == [(6, mid)]


def test_before_the_time_runs_out_the_best_so_far_gets_all_rows_once():
    low, mid = RUNGS[0], RUNGS[1]
    records = [_rec(0, 0.5, low), _rec(1, 0.7, low), _rec(2, 0.6, mid, parent=1), _rec(3, 0.4, low)]
    for r in records:
        r.cost = {"train_seconds": 10.0}
    # trial 2 (the best of the highest rung, 1/3 of the rows, 10 s) would take about 30 s on all rows
    assert last_call(records, RUNGS, seconds_left=200.0) is None  # time enough for the ladder
    assert last_call(records, RUNGS, seconds_left=None) is None  # no time budget
    final = last_call(records, RUNGS, seconds_left=55.0)
    assert final is not None and (final[0].number, final[1]) == (2, 1.0)
    assert last_call(records, RUNGS, seconds_left=25.0) is None  # too late: it could not finish
    queued = records + [_rec(4, None, 1.0, parent=2, state="waiting")]
    assert last_call(queued, RUNGS, seconds_left=55.0) is None  # once
    refused = records + [_rec(4, None, 1.0, parent=2, state="pruned")]  # "not started: ..." by the cost model
    assert last_call(refused, RUNGS, seconds_left=45.0) is None  # once, even when it could not run
    assert last_call(records, [1.0], seconds_left=55.0) is None  # no rungs, no ladder


def test_only_the_highest_fidelity_reached_ranks():
    records = [_rec(0, 0.99, RUNGS[0]), _rec(1, 0.6, 1.0, parent=0), _rec(2, 0.9, RUNGS[1]),
               _rec(3, None, 1.0, state="fail")]
    assert [r.number for r in top_fidelity(records)] == [1]
    cut_short = [_rec(0, 0.99, RUNGS[0]), _rec(2, 0.8, RUNGS[1])]  # no trial saw every row
    assert [r.number for r in top_fidelity(cut_short)] == [2]
    plain = [_rec(0, 0.5, 1.0), _rec(1, 0.6, 1.0)]
    assert top_fidelity(plain) == plain


def test_each_rung_trains_on_a_fixed_nested_subsample():
    ninth, third = subsample(900, RUNGS[0], seed=3), subsample(900, RUNGS[1], seed=3)
    assert len(ninth) == 100 and len(third) == 300 and len(np.unique(third)) == 300
    assert set(ninth) <= set(third)  # a promoted configuration keeps the rows it was chosen on
    assert np.array_equal(ninth, subsample(900, RUNGS[0], seed=3))  # every trial of a rung: the same rows
    assert len(subsample(900, 1.0, seed=3)) == 900


def test_auto_uses_rows_only_under_a_time_budget_with_enough_rows():
    enough = int(AUTO_MIN_ROWS / RUNGS[0]) + 9
    assert rungs_for("auto", enough, time_budget=True) == list(RUNGS)
    assert rungs_for("auto", enough, time_budget=False) == [1.0]  # a trial count: every trial sees every row
    assert rungs_for("auto", enough - 100, time_budget=True) == [1.0]  # a ninth would be too few rows
    assert rungs_for("auto", enough, True, why_not="a cross-validated search ...") == [1.0]
    assert rungs_for("auto", enough, True, subsample_ranks=False) == [1.0]  # e.g. images: measured worse
    assert rungs_for("none", enough, time_budget=True) == [1.0]
    assert rungs_for("rows", 300, time_budget=False) == list(RUNGS)  # asked for: on, whatever the size
    why = obstacle(False, "keras-tuner", 0, "mean", False)
    with pytest.raises(ConfigError, match="search.fidelity 'rows': backend 'keras-tuner' cannot run"):
        rungs_for("rows", 300, False, why_not=why)
    assert obstacle(True, "optuna", 5, "mean", False).startswith("a cross-validated search")
    assert obstacle(True, "optuna", 0, "pareto", False) and obstacle(True, "optuna", 0, "mean", True)
    assert label(1 / 9) == "1/9" and label(1.0) == "all"
    assert describe(list(RUNGS), 9000) == ("multi-fidelity by rows: 1/9 (1,000 rows), 1/3 (3,000 rows), all "
                                          "(9,000 rows), the best third of each rung moves up")


@pytest.mark.e2e
def test_a_search_on_rows_promotes_its_best_and_exports_a_full_fidelity_trial(write_experiment, cli):
    """Trials 0-5 on a ninth/third of the rows, promotions run on more, best/ is trained on all rows."""
    path = write_experiment()
    exp = yaml.safe_load(path.read_text())
    exp["search"].update(trials=8, epochs=2, patience=None, fidelity="rows", baselines="off", ensemble=0)
    path.write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", path)
    assert result.exit_code == 0, result.output
    assert "multi-fidelity by rows: 1/9" in result.output
    assert "of the rows, promoted from trial" in result.output  # the trial line names the promotion
    run = path.parent / "run"
    trials = json.loads((run / "trials.json").read_text())["trials"]
    by_number = {t["number"]: t for t in trials}
    promoted = [t for t in trials if t["parent"] is not None]
    assert promoted, [(t["number"], t["fidelity"], t["state"]) for t in trials]
    for t in promoted:  # the same configuration, on the next rung's rows
        parent = by_number[t["parent"]]
        assert t["params"] == parent["params"] and t["fidelity"] > parent["fidelity"]
    train_rows = 225  # 300 rows, 25 % validate
    for t in trials:
        if t["state"] == "complete":
            assert t["cost"]["rows"] == round(train_rows * t["fidelity"]), t
    top = max(t["fidelity"] for t in trials if t["state"] == "complete")
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    best = by_number[manifest["trial"]["number"]]
    assert best["fidelity"] == top  # a ninth-of-the-rows score never outranks a trial on more rows


def test_what_follows_the_trials_is_planned_on_every_row():
    """The refit and the baselines train on all rows: a best trial on 1/3 of them took a third of that."""
    from automtl.run.budget import Budget

    budget = Budget(deadline=None, seconds=600, tasks=2, max_epochs=30, refit=True, refit_rows=1.0, baselines=True)
    on_third = TrialRecord(1, "complete", 0.8, {}, {}, 11.0, best_epoch=10, fidelity=RUNGS[1],
                           cost={"train_seconds": 10.0, "epochs": 10})
    on_ninth = TrialRecord(0, "complete", 0.9, {}, {}, 4.0, best_epoch=10, fidelity=RUNGS[0],
                           cost={"train_seconds": 3.0, "epochs": 10})
    costs = budget.end_costs([on_ninth, on_third])
    assert costs["refit"] == pytest.approx(30.0) and costs["baselines"] == pytest.approx(60.0)
