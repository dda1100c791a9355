"""Ensembles of the best trials: greedy selection with replacement (Caruana et al., 2004).

Every completed trial keeps its raw validation outputs (``trials/<n>/valid_pred.npz``),
so selection re-runs no model: it combines saved outputs with each task's
:meth:`~automtl.api.Task.combine` hook and scores them with the task's own
:meth:`~automtl.api.Task.evaluate`, ranked by the search's objective. The chosen
members and weights go to :func:`automtl.export.ensemble.export_ensemble`.
A cross-validated run selects on every training row's out-of-fold output
(:class:`FoldRows`), as AutoGluon and auto-sklearn do: far more rows than one
validation split of a small table, and so less noise in what is picked.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from automtl.core.trial import TrialRecord, trial_dir
from automtl.objective import combine as objective_of
from automtl.objective import mean_of
from automtl.rundir.ensemble import EnsembleResult

if TYPE_CHECKING:
    from automtl.plugin_base import Task
    from automtl.data.arrays import Arrays

VALID_PRED = "valid_pred.npz"
#: Default ensemble size (members drawn with replacement: fewer trials may fill it).
DEFAULT_SIZE = 5
#: Completed trials the default ensemble needs (with fewer there is nothing to combine).
MIN_TRIALS = 2
#: Selection considers the best this many trials (auto-sklearn's ``ensemble_nbest`` idea).
LIBRARY = 20
#: Rows per combine call (bounds memory, e.g. detection's box fusion).
CHUNK = 256
#: Bagged ensemble selection (Caruana et al. 2006): this many bags, each a random share of the library.
BAGS = 20
BAG_FRACTION = 0.5
#: Bag only a library of at least this many trials (smaller ones leave the bags no choice).
BAG_MIN_LIBRARY = 4


@dataclass
class FoldRows:
    """The validation rows of a cross-validated run: each fold's rows, in fold order, scored by that
    fold's own fitted tasks (a fold's targets and outputs are in its own scale, e.g. its standardised
    regression targets). A trial's ``valid_pred`` is its folds' outputs concatenated in the same order,
    and a metric over these rows is the mean over the folds, as the trial's own score is."""

    #: per fold: (its tasks by name, its validation arrays)
    folds: list[tuple[dict[str, "Task"], "Arrays"]]

    def __len__(self) -> int:
        return sum(len(valid) for _, valid in self.folds)

    def evaluate(self, task: str, pred: np.ndarray) -> dict[str, float]:
        out, start = [], 0
        for tasks, valid in self.folds:
            part = pred[start : start + len(valid)]
            start += len(valid)
            out.append(tasks[task].evaluate(valid.y[task], valid.mask[task], part))
        return mean_of(out)

    @classmethod
    def of(cls, folds: Sequence[Any]) -> "FoldRows":
        """From :class:`automtl.data.arrays.Fold` objects."""
        return cls([({t.name: t for t in f.tasks}, f.valid) for f in folds])


def evaluate_task(task: "Task", valid: "Arrays | FoldRows", pred: np.ndarray) -> dict[str, float]:
    """``task``'s metrics of raw outputs ``pred`` on the validation rows (a split or the folds' rows)."""
    if isinstance(valid, FoldRows):
        return valid.evaluate(task.name, pred)
    return task.evaluate(valid.y[task.name], valid.mask[task.name], pred)


def load_valid_pred(run_dir: Path, number: int) -> dict[str, np.ndarray] | None:
    path = trial_dir(run_dir, number) / VALID_PRED
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def combine_task(task: "Task", preds: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """One task's combined raw outputs (numpy), through its ``combine`` hook, in row chunks."""
    if len(preds) == 1:
        return np.asarray(preds[0])
    n = len(preds[0])
    parts = [np.asarray(task.combine([p[s : s + CHUNK] for p in preds], list(weights))) for s in range(0, n, CHUNK)]
    return np.concatenate(parts) if parts else np.asarray(preds[0])


def combine_outputs(tasks: Sequence["Task"], preds: Mapping[int, Mapping[str, np.ndarray]],
                    per_task: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, np.ndarray]:
    """Each task's combined raw outputs from its members (``per_task``: trial and weight per member)."""
    return {t.name: combine_task(t, [preds[int(m["trial"])][t.name] for m in per_task[t.name]],
                                 [float(m["weight"]) for m in per_task[t.name]]) for t in tasks}


def evaluate_outputs(tasks: Sequence["Task"], valid: "Arrays | FoldRows", pred: Mapping[str, np.ndarray],
                     importance: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float], float]:
    """``(metrics as task.metric, per-task scores, objective)`` of raw outputs on the validation rows."""
    metrics: dict[str, float] = {}
    scores: dict[str, float] = {}
    for t in tasks:
        ms = evaluate_task(t, valid, np.asarray(pred[t.name], np.float64))
        metrics.update({f"{t.name}.{k}": float(v) for k, v in ms.items()})
        scores[t.name] = float(t.score(ms))
    return metrics, scores, objective_of(scores, {t.name: importance.get(t.name, 1.0) for t in tasks})


def solo_tasks(tasks: Sequence["Task"]) -> list[str]:
    from automtl.plugin_base import combines

    return [t.name for t in tasks if not combines(t)]


def _scorer(task: "Task", valid: "Arrays | FoldRows", preds: Mapping[int, Mapping[str, np.ndarray]]) -> Any:
    """``score(weights) -> (task score, -tie-break metric)`` of a weighted combination, cached.

    The tie-break (the task's ``tiebreak_metric``, e.g. log loss) ranks combinations
    whose primary metric ties, as it does for most of them when a small validation
    split gives accuracy a few distinct values: greedy selection then still moves
    towards better calibrated, more confident-where-right averages instead of
    stopping at the first tie."""
    cache: dict[tuple, tuple[float, float]] = {}
    tiebreak = getattr(task, "tiebreak_metric", None)

    def score(weights: Mapping[int, float]) -> tuple[float, float]:
        total = float(sum(weights.values()))
        members = sorted(n for n, w in weights.items() if w > 0)
        key = tuple((n, round(weights[n] / total, 12)) for n in members)
        if key not in cache:
            pred = combine_task(task, [preds[n][task.name] for n in members], [weights[n] / total for n in members])
            metrics = evaluate_task(task, valid, np.asarray(pred, np.float64))
            value = float(task.score(metrics))
            second = float(metrics[tiebreak]) if tiebreak and tiebreak in metrics else 0.0
            cache[key] = (value if math.isfinite(value) else -math.inf, -second if math.isfinite(second) else -math.inf)
        return cache[key]

    return score


def _greedy(score: Any, order: list[int], size: int) -> tuple[Counter, list[float]]:
    """Caruana et al. (2004) over ``order``: start from ``order[0]``, add (with replacement) the
    trial that most improves the score, ``size`` members in all; keep the best nested ensemble
    (fewest rounds on a tie), so it never scores below ``order[0]`` alone."""
    counts: Counter = Counter({order[0]: 1})
    history = [(score(counts), Counter(counts))]
    for _ in range(1, size):
        best_n, best_value = None, (-math.inf, -math.inf)
        for n in order:
            value = score(counts + Counter({n: 1}))
            if value > best_value:
                best_n, best_value = n, value
        if best_n is None:
            break
        counts[best_n] += 1
        history.append((best_value, Counter(counts)))
    best_round = max(range(len(history)), key=lambda i: (history[i][0], -i))
    return history[best_round][1], [v[0] for v, _ in history]


def _bagged(score: Any, order: list[int], size: int, bags: int, seed: int) -> dict[int, float]:
    """Bagged ensemble selection (Caruana et al. 2006): greedy selection in ``bags`` random halves
    of the library, each holding ``order[0]`` (the run's best trial, where selection starts),
    and the bags' weights averaged. A single greedy run on a small validation split follows
    its noise (one lucky trial gets most weight); averaging over bags keeps the members
    that help in most of them."""
    rng = np.random.default_rng(seed)
    rest = order[1:]
    half = max(1, int(round(BAG_FRACTION * len(rest))))
    weights: dict[int, float] = {}
    for _ in range(bags):
        picked = sorted(rng.choice(len(rest), half, replace=False).tolist())
        counts, _ = _greedy(score, [order[0], *(rest[i] for i in picked)], size)
        total = sum(counts.values())
        for n, c in counts.items():
            weights[n] = weights.get(n, 0.0) + c / total / bags
    return weights


def heaviest(weights: Mapping[int, float], size: int) -> dict[int, float]:
    """The ``size`` members of largest weight, renormalised: bagging averages many bags' picks, and
    ``--ensemble K`` bounds each task's members (and so the ensemble's serving cost) to K, as a single
    greedy pass of K picks would."""
    kept = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:max(1, size)]
    total = sum(w for _, w in kept)
    return {n: w / total for n, w in kept}


def select(tasks: Sequence["Task"], valid: "Arrays | FoldRows", importance: Mapping[str, float],
           preds: Mapping[int, Mapping[str, np.ndarray]], single_scores: Mapping[int, float], size: int,
           library: int = LIBRARY, bags: int = BAGS, seed: int = 0) -> EnsembleResult:
    """Ensemble selection with replacement, per task, over the best ``library`` trials (by the
    run's score). With at least :data:`BAG_MIN_LIBRARY` trials it is bagged (``bags`` random
    halves of the library, each holding the run's best trial, weights averaged, the ``size``
    heaviest kept), and a task
    whose bagged selection scores below the best trial on the validation rows keeps that
    trial alone; a smaller library gets one greedy pass from the trial best for each task.
    Either way the objective never falls below the best trial's."""
    order = sorted(preds, key=lambda n: (-single_scores[n], n))[:library]
    if not order:
        raise ValueError("no trial with validation predictions to ensemble")
    cannot = set(solo_tasks(tasks))
    per_task: dict[str, list[dict[str, Any]]] = {}
    rounds: dict[str, list[float]] = {}
    solo: dict[str, int] = {}
    bagged = bags > 0 and len(order) >= BAG_MIN_LIBRARY
    for task in tasks:
        score = _scorer(task, valid, preds)
        own = {n: score({n: 1.0}) for n in order}
        # The trial best for this task first; ties go to the better trial by the run's score
        # (the evidence does not prefer the other, and the best trial is the default).
        task_order = sorted(order, key=lambda n: (tuple(-v for v in own[n]), -single_scores[n], n))
        if task.name in cannot:
            solo[task.name] = task_order[0]
            per_task[task.name] = [{"trial": int(task_order[0]), "count": 1, "weight": 1.0}]
            rounds[task.name] = [own[task_order[0]][0]]
            continue
        counts, history = _greedy(score, task_order, size)
        weights = {n: float(c) for n, c in counts.items()}
        if bagged:
            weights = heaviest(_bagged(score, order, size, bags, seed), size)
            if score(weights) < score({order[0]: 1.0}):
                weights = {order[0]: 1.0}
        total = sum(weights.values())
        # bagged weights are averages over bags, not pick counts
        per_task[task.name] = [{"trial": int(n), **({} if bagged else {"count": int(counts[n])}), "weight": w / total}
                               for n, w in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))]
        rounds[task.name] = history
    pred = combine_outputs(tasks, preds, per_task)
    metrics, scores, objective = evaluate_outputs(tasks, valid, pred, importance)
    used = sorted({m["trial"] for ms in per_task.values() for m in ms},
                  key=lambda n: -sum(m["weight"] for ms in per_task.values() for m in ms if m["trial"] == n))
    members = [{"trial": int(n), "weight": sum(m["weight"] for ms in per_task.values() for m in ms if m["trial"] == n)
                / len(per_task), "score": float(single_scores[n])} for n in used]
    notes = []
    if all(len(ms) == 1 and ms[0]["trial"] == order[0] for ms in per_task.values()):
        notes.append("no combination beat the best trial on the validation rows: the ensemble is the best trial alone")
    for name in sorted(cannot):
        notes.append(f"task '{name}' cannot be averaged (its task type defines no combine hook): the ensemble "
                     f"serves it from trial #{solo[name]} alone (the best for it)")
    return EnsembleResult(
        size=size, members=members, tasks=per_task, score=float(objective), scores=scores, metrics=metrics,
        best_single={"trial": int(order[0]), "score": float(single_scores[order[0]])}, rounds=rounds, solo=solo,
        library=len(order), bags=bags if bagged else 0, notes=notes,
    )


def select_for_run(run_dir: Path, tasks: Sequence["Task"], valid: "Arrays | FoldRows", importance: Mapping[str, float],
                   records: Sequence[TrialRecord], size: int | None) -> tuple[EnsembleResult | None, str]:
    """The ensemble of a run's completed trials, or None with the reason in words.

    ``size`` None is the default: :data:`DEFAULT_SIZE` members (greedy selection with replacement)
    from :data:`MIN_TRIALS` completed trials on, so a short timed run still ends with an ensemble.
    """
    # Every completed trial is a candidate, whatever rows it trained on (multi-fidelity): greedy
    # selection keeps a member only while it improves the ensemble on the same validation rows.
    done = [r for r in records if r.ok]
    if size == 0:
        return None, "ensemble off (--ensemble 0)"
    if size is None:
        if len(done) < MIN_TRIALS:
            return None, f"no ensemble: {len(done)} trial(s) completed, an ensemble needs {MIN_TRIALS}"
        size = DEFAULT_SIZE
    preds: dict[int, dict[str, np.ndarray]] = {}
    for r in done:
        p = load_valid_pred(run_dir, r.number)
        if p is not None and all(t.name in p and len(p[t.name]) == len(valid) for t in tasks):
            preds[r.number] = p
    if len(preds) < 2:
        return None, (f"no ensemble: {len(preds)} completed trial(s) kept validation predictions in {run_dir} "
                      "(an ensemble needs two)")
    result = select(tasks, valid, importance, preds, {r.number: float(r.score) for r in done if r.number in preds},
                    size)
    missing = len(done) - len(preds)
    if missing:
        result.notes.append(f"{missing} completed trial(s) left out: no validation predictions in this run folder")
    return result, ""
