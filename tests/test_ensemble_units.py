"""Ensembles, baselines and distillation, piece by piece: delta-m, selection, each task's combine, packing."""

from __future__ import annotations

import numpy as np
import pytest

from automtl.api import Targets, Task, combines
from automtl.data.arrays import Arrays
from automtl.run.ensemble import FoldRows, select
from automtl.rundir.baselines import Baselines, TaskBaseline, delta_m, relative_change, summary_sentence, verdict


# -- delta-m -----------------------------------------------------------------------------------
def test_delta_m_on_a_hand_made_example():
    # accuracy 0.90 multi vs 0.80 single: +12.5 %; RMSE 1.2 multi vs 1.0 single (lower is better): -20 %
    acc = relative_change(0.90, 0.80, "maximize")
    rmse = relative_change(1.2, 1.0, "minimize")
    assert acc == pytest.approx(12.5) and rmse == pytest.approx(-20.0)
    assert delta_m([acc, rmse]) == pytest.approx(-3.75)
    assert relative_change(0.5, 0.0, "maximize") is None  # no relative change from zero
    assert delta_m([None, 4.0]) == pytest.approx(4.0)
    assert verdict(3.0, [0.5, 6.0]) == "helped" and verdict(-3.0, [-6.0, -0.1]) == "hurt"
    assert verdict(3.0, [-1.0, 6.0]) == "unclear"
    b = Baselines("auto", 3, [TaskBaseline("a", "accuracy", "maximize", 0.8, 0.9, acc, [1.0, 20.0], "helped", 3, "x")],
                  delta_m([acc]))
    assert "+12.50 %" in summary_sentence(b) and "clearly better with sharing: a" in summary_sentence(b)
    assert Baselines.from_json(b.to_json()) == b


def test_delta_m_says_no_task_changed_when_every_verdict_is_unclear():
    unclear = [TaskBaseline("a", "accuracy", "maximize", 0.8, 0.82, 2.5, [-3.0, 8.0], "unclear", 3, "x"),
               TaskBaseline("b", "rmse", "minimize", 4.0, 4.1, 2.4, [-1.0, 6.0], "unclear", 3, "x")]
    sentence = summary_sentence(Baselines("auto", 2, unclear, delta_m([2.5, 2.4])))
    assert "no task changed beyond noise" in sentence and "helped" not in sentence, sentence
    clear = [unclear[0], TaskBaseline("b", "rmse", "minimize", 4.0, 5.0, 25.0, [10.0, 40.0], "helped", 3, "x")]
    assert "sharing helped on average" in summary_sentence(Baselines("auto", 2, clear, delta_m([2.5, 25.0])))


def test_trial_counts_count_only_trials_that_ran():
    from automtl.run.summary import trial_counts
    from automtl.core.trial import TrialRecord

    records = [TrialRecord(i, "complete", 0.5, {}, {}, 1.0) for i in range(3)] + [
        TrialRecord(3, "waiting", None, {}, {}, None)]
    text = trial_counts(records)
    assert text.startswith("3 trials ran: 3 complete") and "1 queued" in text, text
    assert trial_counts(records[:1] + [TrialRecord(4, "pruned", None, {}, {}, 1.0)]) == "2 trials ran: 1 complete, 1 pruned"


# -- selection ---------------------------------------------------------------------------------
class Squared(Task):
    """Regression-like toy task: predictions averaged, scored by minus the mean squared error."""

    primary_metric = "mse"
    direction = "minimize"

    def evaluate(self, y_true, mask, y_pred):
        m = mask > 0
        return {"mse": float(((y_pred[m] - y_true[m]) ** 2).mean())}

    def combine(self, raw_outputs, weights):
        return sum(w * np.asarray(r) for r, w in zip(raw_outputs, weights)) / sum(weights)


class Uncombinable(Squared):
    combine = Task.combine


def _valid(n: int = 4, tasks=("t",)) -> Arrays:
    return Arrays({"x": np.zeros((n, 1), np.float32)}, {t: np.zeros(n, np.float32) for t in tasks},
                  {t: np.ones(n, np.float32) for t in tasks})


def test_greedy_selection_with_replacement_on_hand_made_predictions():
    task = Squared("t")
    n = 4
    preds = {0: {"t": np.full(n, 1.0)}, 1: {"t": np.full(n, -1.0)}, 2: {"t": np.full(n, 0.9)}}
    single = {0: -1.0, 1: -1.0, 2: -0.81}
    result = select([task], _valid(n), {"t": 1.0}, preds, single, size=5)
    # round 1: #2 alone (-0.81); round 2: #2 + #1 averages to -0.05 (-0.0025), the best of all nested ensembles
    assert result.rounds["t"][0] == pytest.approx(-0.81)
    assert result.rounds["t"][1] == pytest.approx(-0.0025)
    assert len(result.rounds["t"]) == 5 and max(result.rounds["t"]) == pytest.approx(result.score)
    assert {m["trial"]: m["weight"] for m in result.tasks["t"]} == {2: 0.5, 1: 0.5}
    assert result.score == pytest.approx(-0.0025) and result.gain == pytest.approx(0.8075)
    assert result.best_single == {"trial": 2, "score": -0.81}
    # with replacement: a member may be picked twice, its weight carrying the count
    preds2 = {0: {"t": np.full(n, 3.0)}, 1: {"t": np.full(n, -1.5)}}
    result2 = select([task], _valid(n), {"t": 1.0}, preds2, {0: -9.0, 1: -2.25}, size=3)
    assert {m["trial"]: m["count"] for m in result2.tasks["t"]} == {1: 2, 0: 1}  # (3 - 1.5 - 1.5) / 3 = 0
    assert result2.score == pytest.approx(0.0)


def test_each_task_gets_its_own_members():
    # trial 0 is best for 'a', trial 1 for 'b': each task is served by its own, beating both trials
    a, b = Squared("a"), Squared("b")
    n = 4
    preds = {0: {"a": np.zeros(n), "b": np.full(n, 2.0)}, 1: {"a": np.full(n, 2.0), "b": np.zeros(n)}}
    result = select([a, b], _valid(n, ("a", "b")), {"a": 1.0, "b": 1.0}, preds, {0: -2.0, 1: -2.0}, size=3)
    assert result.tasks == {"a": [{"trial": 0, "count": 1, "weight": 1.0}], "b": [{"trial": 1, "count": 1, "weight": 1.0}]}
    assert result.score == pytest.approx(0.0) and result.gain == pytest.approx(2.0)
    assert sorted(m["trial"] for m in result.members) == [0, 1]
    assert sum(m["weight"] for m in result.members) == pytest.approx(1.0)


def test_a_tie_for_a_task_goes_to_the_better_trial_by_the_run_score():
    # 'a' is predicted perfectly by all three trials; #2 is the run's best (its 'b' is best): 'a' is served by #2,
    # not by the first trial number that ties, and needs no other member
    a, b = Squared("a"), Squared("b")
    n = 4
    preds = {k: {"a": np.zeros(n), "b": np.full(n, v)} for k, v in ((0, 3.0), (1, 2.0), (2, 0.5))}
    result = select([a, b], _valid(n, ("a", "b")), {"a": 1.0, "b": 1.0}, preds, {0: -4.5, 1: -2.0, 2: -0.125}, size=3)
    assert result.tasks["a"] == [{"trial": 2, "count": 1, "weight": 1.0}]


def test_selection_never_scores_below_the_best_trial_and_names_tasks_it_cannot_average():
    task, other = Squared("t"), Uncombinable("u")
    assert combines(task) and not combines(other)
    n = 4
    preds = {0: {"t": np.full(n, 0.1), "u": np.full(n, 0.2)}, 1: {"t": np.full(n, 0.5), "u": np.full(n, 5.0)}}
    result = select([task, other], _valid(n, ("t", "u")), {"t": 1.0, "u": 1.0}, preds, {0: -0.025, 1: -12.6}, size=4)
    assert result.tasks["u"] == [{"trial": 0, "count": 1, "weight": 1.0}] and result.score >= -0.025 - 1e-12
    assert result.solo == {"u": 0}
    assert any("task 'u' cannot be averaged" in note for note in result.notes)


class SignHits(Squared):
    """A coarse primary metric (share of right signs) that ties often; the mean squared error breaks ties."""

    primary_metric, direction, tiebreak_metric = "hits", "maximize", "mse"

    def evaluate(self, y_true, mask, y_pred):
        m = mask > 0
        return {"hits": float((np.sign(y_pred[m]) == np.sign(y_true[m])).mean()),
                "mse": float(((y_pred[m] - y_true[m]) ** 2).mean())}


def test_ties_of_a_coarse_metric_are_broken_by_the_tiebreak_metric():
    # every trial gets every sign right; #0 (0.9) and #2 (1.1) average to the truth: the tie-break finds that pair
    task, n = SignHits("t"), 4
    preds = {0: {"t": np.full(n, 0.9)}, 1: {"t": np.full(n, 0.2)}, 2: {"t": np.full(n, 1.1)}}
    valid = Arrays({"x": np.zeros((n, 1))}, {"t": np.ones(n)}, {"t": np.ones(n)})
    result = select([task], valid, {"t": 1.0}, preds, {0: 1.0, 1: 1.0, 2: 1.0}, size=2)
    assert {m["trial"]: m["weight"] for m in result.tasks["t"]} == {0: 0.5, 2: 0.5}
    task.tiebreak_metric = None  # without it, no member beats the first: the best trial alone
    assert select([task], valid, {"t": 1.0}, preds, {0: 1.0, 1: 1.0, 2: 1.0}, size=2).tasks["t"] == [
        {"trial": 0, "count": 1, "weight": 1.0}]


def test_bagged_selection_averages_bags_that_all_hold_the_best_trial():
    # six trials: the bags (random halves of the other five, plus the best #0) pick different partners for #0
    # (or none, in a bag of #4 and #5 only); the weights are their average, never below #0 on the validation rows
    task, n = Squared("t"), 4
    values = {0: 0.3, 1: -0.35, 2: -0.4, 3: -0.45, 4: 2.0, 5: 3.0}
    preds = {k: {"t": np.full(n, v)} for k, v in values.items()}
    single = {k: -v * v for k, v in values.items()}
    from automtl.run.ensemble import _bagged, _scorer

    bags = _bagged(_scorer(task, _valid(n), preds), [0, 1, 2, 3, 4, 5], 2, 20, 0)
    assert {1, 2, 3} >= set(bags) - {0} and len(bags) >= 3  # partners vary from bag to bag; never #4 or #5
    result = select([task], _valid(n), {"t": 1.0}, preds, single, size=2, bags=20)
    weights = {m["trial"]: m["weight"] for m in result.tasks["t"]}
    assert result.bags == 20 and 0.5 <= weights[0] < 1 and sum(weights.values()) == pytest.approx(1.0)
    assert len(weights) == 2 and set(weights) - {0} <= {1, 2, 3}  # --ensemble 2: the two heaviest members
    assert result.score > -0.09 and result.best_single["trial"] == 0
    assert select([task], _valid(n), {"t": 1.0}, preds, single, size=2, bags=0).bags == 0


# -- each task type's combine --------------------------------------------------------------------
def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _classification(**options):
    from automtl_classification import ClassificationTask

    task = ClassificationTask("c", {"target": "y", **options})
    return task


class Scaled(Squared):
    """A task fitted per fold: its targets and outputs are in units of its own ``scale``."""

    def __init__(self, name, scale):
        super().__init__(name)
        self.scale = scale

    def evaluate(self, y_true, mask, y_pred):
        m = mask > 0
        return {"mse": float((((y_pred[m] - y_true[m]) * self.scale) ** 2).mean())}


def test_cross_validated_selection_scores_each_fold_in_its_own_scale():
    """Out-of-fold rows: each fold's outputs are scored by that fold's task, and a trial alone scores
    the mean over the folds, as the trial itself was scored; selection then works as on one split."""
    folds = FoldRows([({"t": Scaled("t", 1.0)}, _valid(2)), ({"t": Scaled("t", 10.0)}, _valid(3))])
    assert len(folds) == 5
    # trial 0 errs by 0.1 on every row, trial 1 by -0.1, trial 2 by 0.3 (each in its fold's units)
    preds = {0: {"t": np.full(5, 0.1)}, 1: {"t": np.full(5, -0.1)}, 2: {"t": np.full(5, 0.3)}}
    alone = {n: -np.mean([(0.1 * k * s) ** 2 for s in (1.0, 10.0)]) for n, k in ((0, 1), (1, 1), (2, 3))}
    assert folds.evaluate("t", preds[2]["t"])["mse"] == pytest.approx(-alone[2])
    result = select([Squared("t")], folds, {"t": 1.0}, preds, alone, size=4)
    assert {m["trial"] for m in result.tasks["t"]} == {0, 1}  # their errors cancel
    assert result.score == pytest.approx(0.0, abs=1e-12) and result.score > alone[0]


def test_a_cross_validated_baseline_compares_out_of_fold_outputs_fold_by_fold():
    """Single- vs multi-task on a cross-validated run: both trials' out-of-fold outputs, on the rows
    labelled for the task, each fold scored in its own scale and the folds averaged (as the trials
    were scored); the bootstrap resamples within folds."""
    from automtl.run import baselines

    first, second = _valid(4), _valid(8)
    first.mask["t"][1] = 0  # labelled for another task only: no single-task row
    multi_rows = FoldRows([({"t": Scaled("t", 1.0)}, first), ({"t": Scaled("t", 10.0)}, second)])
    single_rows = FoldRows([({"t": Scaled("t", 1.0)}, first.only(["t"])), ({"t": Scaled("t", 10.0)}, second)])
    assert len(single_rows) == 11
    multi = np.full(12, 0.1)
    multi[1] = 99.0  # the unlabelled row's output counts nowhere
    single = np.full(11, 0.2)
    m, s, delta, interval = baselines.compare(Squared("t"), multi_rows, multi, single_rows, single)
    assert m == pytest.approx((0.1**2 + 1.0**2) / 2) and s == pytest.approx((0.2**2 + 2.0**2) / 2)
    assert delta == pytest.approx(75.0) and interval == pytest.approx([75.0, 75.0])
    # folds of other rows (not the multi-task folds' labelled rows): the whole figures only, fold by fold
    other = FoldRows([({"t": Scaled("t", 1.0)}, _valid(5)), ({"t": Scaled("t", 10.0)}, _valid(6))])
    m, s, delta, interval = baselines.compare(Squared("t"), multi_rows, multi, other, single)
    assert interval is None and s == pytest.approx(2.02) and m == pytest.approx(0.505)


def test_classification_combine_averages_probabilities():
    rng = np.random.default_rng(0)
    task = _classification()
    task.classes, task.binary = [0, 1, 2], False
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    combined = np.asarray(task.combine([a, b], [0.25, 0.75]))
    np.testing.assert_allclose(_softmax(combined), 0.25 * _softmax(a) + 0.75 * _softmax(b), rtol=1e-5)
    task.classes, task.binary = [0, 1], True  # binary: one logit per row
    a, b = rng.normal(size=(5, 1)), rng.normal(size=(5, 1))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(sig(np.asarray(task.combine([a, b], [0.5, 0.5]))), 0.5 * sig(a) + 0.5 * sig(b), rtol=1e-5)
    multi = _classification(multilabel=True)  # multi-label: one sigmoid per class
    multi.classes, multi.binary = ["x", "y", "z"], False
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(sig(np.asarray(multi.combine([a, b], [0.6, 0.4]))), 0.6 * sig(a) + 0.4 * sig(b), rtol=1e-5)


def test_regression_combine_averages_values():
    from automtl_regression import RegressionTask

    task = RegressionTask("r", {"target": "y"})
    a, b, c = np.ones((3, 1)), np.zeros((3, 1)), np.full((3, 1), 4.0)
    np.testing.assert_allclose(np.asarray(task.combine([a, b, c], [0.5, 0.25, 0.25])), np.full((3, 1), 1.5))


def test_tagging_combine_averages_per_token_probabilities_and_keeps_the_token_mask():
    from automtl_text import TextTask

    task = TextTask("tags", {})
    rng = np.random.default_rng(1)
    present = np.array([[1.0, 1.0, 0.0]])[..., None]  # two tokens and one padding position
    a = np.concatenate([rng.normal(size=(1, 3, 4)), present], axis=-1)
    b = np.concatenate([rng.normal(size=(1, 3, 4)), present], axis=-1)
    combined = np.asarray(task.combine([a, b], [0.5, 0.5]))
    np.testing.assert_allclose(_softmax(combined[..., :-1]), 0.5 * _softmax(a[..., :-1]) + 0.5 * _softmax(b[..., :-1]),
                               rtol=1e-5)
    np.testing.assert_array_equal(combined[..., -1], present[..., 0])


def test_detection_combine_fuses_the_members_boxes():
    from automtl_detection import DetectionTask
    from automtl_detection.grid import fuse

    def dets(rows):  # packed detections: xmin, ymin, xmax, ymax, score, class (-1 padding), 100 per image
        out = np.zeros((1, 100, 6), np.float32)
        out[..., 5] = -1
        out[0, : len(rows)] = rows
        return out

    one = dets([[0.10, 0.10, 0.30, 0.30, 0.8, 0]])
    two = dets([[0.60, 0.60, 0.90, 0.90, 0.9, 1], [0.12, 0.10, 0.32, 0.30, 0.6, 0]])
    fused = fuse([one, two], [0.5, 0.5], 2, 100, 0.05, 0.5).numpy()[0]
    live = fused[fused[:, 5] >= 0]
    assert len(live) == 2
    # the box both members found: member-weighted mean score, score-weighted mean box; it ranks first
    np.testing.assert_allclose(live[0, 4], 0.5 * 0.8 + 0.5 * 0.6, rtol=1e-5)
    np.testing.assert_allclose(live[0, :4], (0.4 * np.array([0.1, 0.1, 0.3, 0.3]) + 0.3 * np.array([0.12, 0.1, 0.32, 0.3])) / 0.7,
                               rtol=1e-5)
    assert live[0, 5] == 0
    # the box one member missed counts its absence as 0
    np.testing.assert_allclose(live[1, 4], 0.45, rtol=1e-5)
    # through the task: members' raw grids of different sizes combine, and the result evaluates and serves
    task = DetectionTask("boxes", {})
    task.classes = ["a", "b"]
    rng = np.random.default_rng(0)
    grids = [rng.normal(size=(2, 4, 4, 7)).astype(np.float32), rng.normal(size=(2, 8, 8, 7)).astype(np.float32)]
    combined = np.asarray(task.combine(grids, [0.7, 0.3]))
    assert combined.shape == (2, 100, 6)
    served = task.postprocess(combined)
    assert set(served) >= {"boxes", "scores", "class_id", "label", "num_detections"}
    truth = np.zeros((2, 1, 5), np.float32)
    truth[:, 0] = [0.1, 0.1, 0.4, 0.4, 0]
    assert "map50" in task.evaluate(truth, np.ones(2), combined)


# -- distillation: labels, teacher targets and the filled-in rows --------------------------------
def test_distilled_task_mixes_hard_and_teacher_losses_and_fills_missing_labels():
    import tensorflow as tf

    from automtl.training.distillation import FILL_WEIGHT, SOFT_WEIGHT, DistilledTask
    from automtl.training.losses import masked_mean

    task = _classification()
    task.classes, task.binary, task.mode = [0, 1, 2], False, "single"
    hard = np.array([0, 2, 0, 0], np.int32)
    mask = np.array([1, 1, 0, 0], np.float32)  # rows 2 and 3 have no label
    teacher = np.array([[3.0, 0, 0], [0, 0, 3.0], [0, 3.0, 0], [0, 0, 3.0]], np.float32)
    soft = task.distill_targets(teacher, 2.0)
    np.testing.assert_allclose(soft.y, _softmax(teacher / 2.0), rtol=1e-6)
    student = DistilledTask(task, 2.0, hard, mask, soft)
    packed, weight = student.pack(hard, mask, soft)
    np.testing.assert_allclose(weight, [1, 1, FILL_WEIGHT, FILL_WEIGHT])
    np.testing.assert_array_equal(student.hard_labels(packed), hard)
    logits = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), tf.float32)
    hard_loss = task.loss(tf.constant(hard), logits).numpy()
    soft_loss = task.distill_loss(tf.constant(soft.y), logits, 2.0).numpy()
    per_entry = student.loss(tf.constant(packed), logits).numpy()
    np.testing.assert_allclose(per_entry[:2], (1 - SOFT_WEIGHT) * hard_loss[:2] + SOFT_WEIGHT * soft_loss[:2], rtol=1e-5)
    np.testing.assert_allclose(per_entry[2:], soft_loss[2:], rtol=1e-5)  # the teacher fills in
    total = masked_mean(student.loss(tf.constant(packed), logits), tf.constant(weight)).numpy()
    expected = (per_entry[:2].sum() + FILL_WEIGHT * per_entry[2:].sum()) / (2 + 2 * FILL_WEIGHT)
    assert total == pytest.approx(expected, rel=1e-5)


def test_distilled_box_targets_survive_augmentation_with_their_flag():
    from automtl_image.augment import flip_horizontal

    from automtl.training.distillation import DistilledTask
    from automtl_detection import DetectionTask

    task = DetectionTask("boxes", {})
    task.classes = ["a"]
    hard = np.zeros((2, 1, 5), np.float32)
    hard[0, 0] = [0.1, 0.2, 0.3, 0.4, 0]
    hard[1, 0, 4] = -1
    soft = Targets(y=np.array([[[0.5, 0.5, 0.7, 0.7, 0]], [[0.6, 0.1, 0.8, 0.3, 0]]], np.float32), mask=np.ones(2))
    student = DistilledTask(task, 1.0, hard, np.array([1.0, 0.0]), soft)
    packed, weight = student.pack(hard, np.array([1.0, 0.0]), soft)
    np.testing.assert_allclose(weight, [1.0, 0.5])
    import tensorflow as tf

    _, (moved,) = flip_horizontal(tf.zeros((2, 8, 8, 1)), [tf.constant(packed)], tf.constant([True, True]))
    moved = moved.numpy()
    np.testing.assert_array_equal(moved[:, 0], packed[:, 0])  # the flag row stays put
    np.testing.assert_allclose(moved[0, 1, :4], [0.7, 0.2, 0.9, 0.4], rtol=1e-6)  # hard box mirrored
    np.testing.assert_allclose(moved[1, 2, :4], [0.2, 0.1, 0.4, 0.3], rtol=1e-6)  # teacher box mirrored
    np.testing.assert_array_equal(student.hard_labels(moved)[0, 0, 4], 0)


# -- the single-task space of a baseline search -------------------------------------------------
def test_mixup_rows_mix_numbers_and_take_other_inputs_from_the_larger_share():
    from automtl.run.distill import mixup_inputs

    x = {"num": np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0]], np.float32),
         "cat": np.array(["a", "b", "c"], dtype=object)}
    mixed, why = mixup_inputs(x, [Squared("t")], per_row=4, seed=1)
    assert why == "" and len(mixed["num"]) == 12 and mixed["num"].dtype == np.float32
    # each mixed row lies on the segment between two training rows (here a line: the second column is 10 + 10 * first)
    np.testing.assert_allclose(mixed["num"][:, 1], 10 + 10 * mixed["num"][:, 0], rtol=1e-5)
    assert set(mixed["cat"]) <= {"a", "b", "c"}
    assert mixup_inputs(x, [Squared("t")], per_row=0)[0] is None
    boxes = Squared("b")
    boxes.box_targets = True
    assert mixup_inputs(x, [boxes], per_row=4)[0] is None


def test_single_task_space_drops_multi_task_and_other_tasks_parameters_and_keeps_start_points():
    from automtl.core.params import ParamSpec
    from automtl.run.baselines import single_task_params, single_task_space
    from automtl.space import parse_space

    smoothing = {"label_smoothing": ParamSpec("label_smoothing", default=0.0, low=0.0, high=0.3)}
    raw = {"parameters": {"trunk.units": {"choice": [16, 32]}, "strategy": {"choice": ["joint", "alternating"]},
                          "weighting": {"choice": ["static", "uncertainty"]},
                          "label_smoothing": {"float": [0.0, 0.2]}},
           "per_task": {"head.units": {"choice": [8, 16]}, "loss_weight": {"float": [0.5, 2.0]}},
           "start": [{"trunk.units": 32, "weighting": "uncertainty", "label_smoothing": 0.1}, {"weighting": "static"}]}
    space = parse_space(raw, "space.yaml", ["price"], smoothing)
    # 'price' is a regression task: classification's label_smoothing is another task's parameter
    single = single_task_space(space, ["price"], foreign=smoothing)
    assert single.names() == ["trunk.units", "strategy", "head.price.units"]
    assert single.start == [{"trunk.units": 32}]  # a point left with nothing to set goes
    params = {"trunk.units": 32, "weighting": "uncertainty", "label_smoothing": 0.1, "head.price.units": 8,
              "head.kind.units": 16, "loss_weight.price": 1.5, "loss_weight.kind": 0.7}
    assert single_task_params(params, "price", ["price", "kind"], smoothing) == {"trunk.units": 32,
                                                                                 "head.price.units": 8}
    assert single_task_params(params, "kind", ["price", "kind"]) == {"trunk.units": 32, "label_smoothing": 0.1,
                                                                      "head.kind.units": 16}


def test_bootstrap_interval_fits_its_time_budget_for_a_costly_metric(monkeypatch):
    """A metric that is slow to compute (detection mAP) gets the draws that fit in the budget, or no interval."""
    import types

    from automtl.data.arrays import Arrays
    from automtl.run import baselines

    clock = [0.0]  # a fake clock: each metric call costs 10 ms whatever the machine's load

    class Slow:
        name, primary_metric, direction = "t", "accuracy", "maximize"
        calls = 0

        def evaluate(self, y, mask, pred):
            Slow.calls += 1
            clock[0] += 0.01
            return {"accuracy": float(np.mean((pred[:, 0] > 0.5) == (y[:, 0] > 0.5)))}

    rng = np.random.default_rng(0)
    y = (rng.random((60, 1)) > 0.5).astype(np.float64)
    valid = Arrays({"x": np.zeros((60, 1))}, {"t": y}, {"t": np.ones((60, 1))})
    good, bad = y * 0.9 + 0.05, rng.random((60, 1))
    monkeypatch.setattr(baselines, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(baselines, "BOOTSTRAP_SECONDS", 1.2)  # room for ~60 draws of two 10 ms calls
    multi, single, delta, interval = baselines.compare(Slow(), valid, good, valid, bad)
    assert multi == 1.0 and delta > 0 and interval is not None
    assert Slow.calls <= 2 + 2 * 62  # not the default 200 draws
    monkeypatch.setattr(baselines, "BOOTSTRAP_SECONDS", 0.3)  # under MIN_RESAMPLES draws: no interval
    assert baselines.compare(Slow(), valid, good, valid, bad)[3] is None


def test_latency_rounds_put_every_model_in_every_position():
    from automtl.run.distill import rotations

    orders = rotations(["best", "ensemble", "student"], 6)
    assert all(sorted(o) == ["best", "ensemble", "student"] for o in orders)
    for position in range(3):  # over the rounds, each model is timed first, second and last equally often
        assert sorted(o[position] for o in orders) == ["best", "best", "ensemble", "ensemble", "student", "student"]


def test_single_task_searches_split_the_main_searchs_trials_even_without_a_trial_count():
    """A timed search (no search.trials) used to fail its single-task baselines on an undefined name."""
    from automtl.config import DEFAULT_TRIALS, SearchConfig
    from automtl.run.baselines import single_task_trials

    assert single_task_trials(SearchConfig(trials=9), 2) == 4
    assert single_task_trials(SearchConfig(timeout=60), 2) == DEFAULT_TRIALS // 2
    assert single_task_trials(SearchConfig(trials=1), 3) == 1
    assert single_task_trials(SearchConfig(trials=9, baseline_trials=5), 2) == 5
