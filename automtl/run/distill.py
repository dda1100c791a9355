"""``automtl distill RUN_DIR --out DIR``: one small multi-task student taught by the run's ensemble (or best trial).

The teacher's raw outputs on every training row become soft targets through
each task's ``distill_targets`` hook; the student (the best trial's
architecture, the smallest trial within 1 % of the best score, or the best of a
small search over a given space) trains on hard labels plus those targets
(:class:`automtl.training.distillation.DistilledTask`), and where a task's label
is missing the teacher's target fills in, weighted below real labels. The
student is exported like ``best/`` with the teacher in its manifest, and both
are measured on their exported SavedModels.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automtl.core.trial import TrialRecord, trial_dir
from automtl.errors import AutomtlError, ConfigError
from automtl.rundir.results import read_trials

TEACHERS = ("ensemble", "best")
#: trial: a best/smallest student starts from that trial's trained weights; scratch: from fresh ones
INITS = ("trial", "scratch")
#: ``--student smallest``: the smallest trial scoring within this share of the best score.
SMALLEST_WITHIN = 0.01
PREDICT_BATCH = 2048
#: A student starting from a trial's trained weights fine-tunes at this share of that trial's learning rate.
FINETUNE_LR = 0.1
#: Default MixUp transfer rows per training row (``--mixup``): pairs of training rows mixed, labelled by the teacher.
MIXUP = 4
#: At most this many MixUp rows, and at most this many bytes of their inputs (images are large).
MIXUP_MAX_ROWS = 50_000
MIXUP_MAX_BYTES = 512 * 2**20


@dataclass
class Measured:
    """One model as the distill command reports it."""

    name: str
    score: float
    scores: dict[str, float]
    metrics: dict[str, float]
    parameters: int | None
    latency_ms: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None


@dataclass
class DistillResult:
    teacher: Measured
    student: Measured
    out: Path
    filled: dict[str, int]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Handle:
    number: int
    params: dict[str, Any]
    epochs: int | None = None
    #: a trial's model.keras to start from (None: fresh weights)
    initial_weights: Path | None = None

    def report(self, epoch: int, value: float) -> None:
        """The student is never pruned."""


# -- checks before TensorFlow starts ----------------------------------------------------------
def check_request(run_dir: Path, teacher: str, student: str, epochs: int | None, temperature: float,
                  init: str = "trial", out: Path | None = None, force: bool = False,
                  mixup: float = MIXUP) -> list[TrialRecord]:
    """Every bad argument is refused here, with the reason; returns the run's completed trials.

    ``out`` is checked like ``automtl export --out`` (a run folder, or a folder
    the user owns that is not an earlier export, is never replaced), so a bad
    one fails in a second rather than after the student's training.
    """
    if init not in INITS:
        raise ConfigError(f"--init {init!r}: expected one of {', '.join(INITS)}")
    if teacher not in TEACHERS:
        raise ConfigError(f"--teacher {teacher!r}: expected one of {', '.join(TEACHERS)}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ConfigError(f"--temperature {temperature}: expected a positive number")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs {epochs}: expected a positive number")
    if not (mixup >= 0 and np.isfinite(mixup)):
        raise ConfigError(f"--mixup {mixup}: expected a number of MixUp rows per training row, 0 or more")
    if student not in ("best", "smallest") and not Path(student).is_file():
        raise ConfigError(f"--student {student!r}: expected best, smallest or a search space file (not found)")
    done = [r for r in read_trials(run_dir).records
            if r.ok and (trial_dir(run_dir, r.number) / "model.keras").exists()]
    if not done:
        raise AutomtlError(f"{run_dir}: no completed trial with a kept model; a student needs a teacher "
                           "(run `automtl search` until a trial completes)")
    from automtl.rundir.folder import load_experiment

    if load_experiment(run_dir).data.folds:
        raise ConfigError(f"{run_dir}: the run cross-validates (data.folds); distillation scores the student against "
                          "its teacher on one validation split (search with a hold-out split, e.g. data.valid_fraction: 0.2, "
                          "to distill)")
    if teacher == "ensemble" and not (Path(run_dir) / "ensemble" / "automtl.json").exists():
        raise AutomtlError(f"{run_dir}: no ensemble here (ensemble/automtl.json); use --teacher best, or rerun the "
                           "search with --ensemble K (it resumes the finished study and only adds the ensemble)")
    if out is not None:
        from automtl.rundir.folder import refuse_inside_run
        from automtl.rundir.outdir import check_out

        refuse_inside_run(out, beside="student")
        check_out(out, force=force)
    return done


# -- the work ------------------------------------------------------------------------------------
def distill(run_dir: Path, out: Path, *, teacher: str = "ensemble", student: str = "best", epochs: int | None = None,
            temperature: float = 2.0, trials: int = 8, init: str = "trial", console: Any = None,
            force: bool = False, mixup: float = MIXUP, seed: int = 0,
            finetune_lr: float | None = None) -> DistillResult:
    run_dir = Path(run_dir)
    done = check_request(run_dir, teacher, student, epochs, temperature, init, out, force, mixup)
    from automtl.data.arrays import Prepared
    from automtl.data.prepare import instantiate, prepare
    from automtl.export.ensemble import load_members, read_ensemble
    from automtl.run.ensemble import combine_outputs, evaluate_outputs
    from automtl.rundir.ensemble import EnsembleResult
    from automtl.rundir.folder import load_experiment

    exp = load_experiment(run_dir)
    encoders, tasks = instantiate(exp)
    prepared = prepare(exp, encoders, tasks, run_dir, keep_unlabelled=True)
    best = max(done, key=lambda r: r.score)
    if teacher == "ensemble":
        ensemble = read_ensemble(run_dir / "ensemble")
        teacher_dir = run_dir / "ensemble"
    else:
        ensemble = EnsembleResult.of_trial(best, [t.name for t in tasks])
        teacher_dir = run_dir / "best"
    module = load_members(run_dir, ensemble, encoders, tasks)
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"teacher: {teacher} ({ensemble.describe()}); predicting {len(prepared.train)} training rows", highlight=False)
    train_raw = _predict(module, prepared.train.x, len(prepared.train))
    valid_raw = _predict(module, prepared.valid.x, len(prepared.valid))
    t_metrics, t_scores, t_score = evaluate_outputs(tasks, prepared.valid, valid_raw, prepared.importance)
    teacher_params = int(sum(m.count_params() for m in module.members))
    notes: list[str] = []
    from automtl.plugin_base import distills
    from automtl.training.distillation import DistilledTask

    mixed_x, why = mixup_inputs(prepared.train.x, tasks, mixup, seed)
    if why:
        notes.append(why)
    if mixed_x and not all(distills(t) for t in tasks):  # decided before the teacher labels them
        notes.append("no MixUp rows: a task has no distill_targets hook, and those rows have no labels for it")
        mixed_x = None
    mixed_raw = _predict(module, mixed_x, len(next(iter(mixed_x.values())))) if mixed_x else None
    del module

    student_tasks, train_y, train_m, valid_y, valid_m = [], {}, {}, {}, {}
    filled = {}
    for t in tasks:
        hard, mask = prepared.train.y[t.name], prepared.train.mask[t.name]
        soft = t.distill_targets(train_raw[t.name], temperature) if distills(t) else None
        if soft is None:
            notes.append(f"task '{t.name}': its task type defines no distill_targets hook; the student learns it "
                         "from the hard labels only")
            student_tasks.append(t)
            train_y[t.name], train_m[t.name] = hard, mask
            valid_y[t.name], valid_m[t.name] = prepared.valid.y[t.name], prepared.valid.mask[t.name]
            continue
        wrapped = DistilledTask(t, temperature, hard, mask, soft)
        student_tasks.append(wrapped)
        train_y[t.name], train_m[t.name] = wrapped.pack(hard, mask, soft)
        if mixed_x:
            # MixUp rows carry no label: the teacher's targets alone, weighted like a filled-in entry.
            mixed_soft = t.distill_targets(mixed_raw[t.name], temperature)
            n_mixed = len(mixed_raw[t.name])
            y_mixed, m_mixed = wrapped.pack(np.zeros((n_mixed, *hard.shape[1:]), hard.dtype),
                                            np.zeros((n_mixed, *mask.shape[1:]), mask.dtype), mixed_soft)
            train_y[t.name] = np.concatenate([train_y[t.name], y_mixed])
            train_m[t.name] = np.concatenate([train_m[t.name], m_mixed])
        v_hard, v_mask = prepared.valid.y[t.name], prepared.valid.mask[t.name]
        valid_y[t.name], _ = wrapped.pack(v_hard, v_mask, None)
        valid_m[t.name] = v_mask
        rows_labelled = mask.reshape(len(mask), -1).any(axis=1)
        filled[t.name] = int((~rows_labelled).sum())
    from automtl.data.arrays import Arrays

    train_x = ({k: np.concatenate([v, mixed_x[k]]) for k, v in prepared.train.x.items()} if mixed_x
               else prepared.train.x)
    taught = Prepared(exp, encoders, student_tasks, Arrays(train_x, train_y, train_m),
                      Arrays(prepared.valid.x, valid_y, valid_m), prepared.importance, prepared.sources)
    work = Path(tempfile.mkdtemp(prefix=".automtl-distill-", dir=Path(out).resolve().parent
                                 if Path(out).resolve().parent.exists() else None))
    try:
        params, source, origin = _student_params(student, done, best, run_dir, taught, work, trials, console)
        start_from = trial_dir(run_dir, origin) / "model.keras" if origin is not None and init == "trial" else None
        lr_scale = FINETUNE_LR if finetune_lr is None else finetune_lr
        if start_from is not None and "learning_rate" in params:
            # Fine-tuning trained weights at the rate that trained them from scratch walks away from
            # the good solution it starts in; a tenth of it is the usual fine-tuning rate.
            params = {**params, "learning_rate": float(params["learning_rate"]) * lr_scale}
            source += f" (learning rate x{lr_scale:g})"
        if start_from is not None:
            source += ", starting from its trained weights"
        say(f"student: {source}; training with the teacher's targets (temperature {temperature:g})", highlight=False)
        from automtl.training.runner import TrialRunner

        started = time.perf_counter()
        outcome = TrialRunner(taught, work / "student")(_Handle(0, params, epochs, start_from))
        record = TrialRecord(0, "complete", outcome.score, params, outcome.metrics,
                             round(time.perf_counter() - started, 3), outcome.device, best_epoch=outcome.best_epoch,
                             scores=outcome.scores)
        from automtl.export.savedmodel import export_trial
        from automtl.training.distillation import FILL_WEIGHT, SOFT_WEIGHT

        manifest_teacher = {"run": str(run_dir.resolve()), "kind": teacher, "members": ensemble.members,
                            "score": t_score, "scores": t_scores, "metrics": t_metrics, "parameters": teacher_params}
        folder = export_trial(
            trial_dir(work / "student", 0) / "model.keras", encoders, tasks, record, Path(out),
            extra={"experiment": exp.name, "data": prepared.sources, "teacher": manifest_teacher,
                   "distillation": {"student": source, "temperature": temperature, "soft_weight": SOFT_WEIGHT,
                                    "fill_weight": FILL_WEIGHT, "filled_rows": filled,
                                    "mixup_rows": len(next(iter(mixed_x.values()))) if mixed_x else 0,
                                    "initial_weights": str(start_from) if start_from else None,
                                    "learning_rate": params.get("learning_rate"),
                                    "epochs": epochs or exp.search.epochs}},
            force=force,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    student_params = json.loads((folder / "automtl.json").read_text()).get("parameters")
    if student_params is None:
        import keras

        student_params = int(keras.saving.load_model(folder / "model.keras").count_params())
    rows = {k: v[: 256] for k, v in prepared.valid.x.items()}
    folders = {"student": folder}
    if (teacher_dir / "saved_model").is_dir():
        folders["teacher"] = teacher_dir
    latency = serving_latency(folders, rows)
    teacher_m = Measured(f"teacher ({teacher})", t_score, t_scores, t_metrics, teacher_params,
                         latency.get("teacher", {}), teacher_dir)
    student_m = Measured("student", record.score, record.scores, record.metrics, int(student_params),
                         latency["student"], folder)
    return DistillResult(teacher_m, student_m, folder, filled, notes)


def mixup_inputs(x: dict[str, Any], tasks: Sequence[Any], per_row: float, seed: int = 0,
                 alpha: float = 1.0) -> tuple[dict[str, np.ndarray] | None, str]:
    """MixUp rows for the transfer set (Zhang et al. 2018; as distillation's "consistent teaching",
    Beyer et al. 2022): ``lam * x_i + (1 - lam) * x_j`` for random pairs of training rows,
    ``lam ~ Beta(alpha, alpha)``, on every floating-point input; other inputs (categories,
    text, token ids) take the value of the row with the larger share. The teacher labels
    these rows, so the student matches the teacher between the training rows too, where
    the few labelled rows of a small data set say nothing. Returns ``(rows or None, why not)``.
    """
    if per_row <= 0:
        return None, ""
    if any(getattr(t, "box_targets", False) for t in tasks):
        return None, "no MixUp rows: a task predicts boxes, and mixed images have no boxes to teach"
    if not all(isinstance(v, np.ndarray) for v in x.values()):
        return None, "no MixUp rows: an input streams from disk"
    n = len(next(iter(x.values())))
    row_bytes = max(1, sum(int(v[:1].nbytes) for v in x.values()))
    count = min(int(round(per_row * n)), MIXUP_MAX_ROWS, MIXUP_MAX_BYTES // row_bytes)
    if n < 2 or count < 1:
        return None, ""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, count), rng.integers(0, n, count)
    lam = rng.beta(alpha, alpha, count)
    first = lam >= 0.5
    out = {}
    for k, v in x.items():
        if v.dtype.kind == "f":
            shape = (count,) + (1,) * (v.ndim - 1)
            out[k] = (lam.reshape(shape) * v[i] + (1 - lam.reshape(shape)) * v[j]).astype(v.dtype)
        else:
            out[k] = np.where(first.reshape((count,) + (1,) * (v.ndim - 1)), v[i], v[j])
    return out, ""


def _predict(module: Any, x: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The teacher's combined raw outputs for every row, in batches."""
    import tensorflow as tf

    fn = tf.function(module.raw, reduce_retracing=True)
    parts = []
    for s in range(0, n, PREDICT_BATCH):
        batch = {k: tf.constant(v[s : s + PREDICT_BATCH].astype(str) if v.dtype == object else v[s : s + PREDICT_BATCH])
                 for k, v in x.items()}
        parts.append({k: v.numpy() for k, v in fn(batch).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _student_params(student: str, done: Sequence[TrialRecord], best: TrialRecord, run_dir: Path, taught: Any,
                    work: Path, trials: int, console: Any) -> tuple[dict[str, Any], str, int | None]:
    """The student's parameters, in words, and the trial whose weights it may start from."""
    if student == "best":
        return dict(best.params), f"the best trial's architecture (#{best.number})", best.number
    if student == "smallest":
        import keras

        for t in taught.tasks:
            getattr(t, "inner", t).register_keras_objects()
        floor = best.score - SMALLEST_WITHIN * abs(best.score)
        near = [r for r in done if r.score >= floor]
        sizes = {r.number: keras.saving.load_model(trial_dir(run_dir, r.number) / "model.keras").count_params()
                 for r in near}
        pick = min(near, key=lambda r: (sizes[r.number], -r.score))
        return dict(pick.params), (f"the smallest trial within {SMALLEST_WITHIN:.0%} of the best score "
                                   f"(#{pick.number}, {sizes[pick.number]:,} parameters)"), pick.number
    return (*_student_search(Path(student), taught, work, trials, console), None)


def _student_search(space_path: Path, taught: Any, work: Path, trials: int, console: Any) -> tuple[dict[str, Any], str]:
    """A small Optuna search over ``space_path`` where every trial learns from the teacher."""
    from automtl import backends
    from automtl.space import load_space, plugin_parameters
    from automtl.training.runner import TrialRunner

    exp = taught.experiment
    names = [t.name for t in taught.tasks]
    space = load_space(space_path, names, plugin_parameters((*taught.encoders, *[getattr(t, "inner", t)
                                                                                   for t in taught.tasks])))
    settings = exp.search.model_copy(update={"backend": "optuna", "algorithm": "tpe", "objective": "mean",
                                             "trials": trials, "storage": None, "workers": 1, "study": "student",
                                             "timeout": None})
    backend = backends.create(settings, work, space, "student")
    runner = TrialRunner(taught, work / "search")

    def on_trial(record: TrialRecord) -> None:
        if console is not None:
            console.print(f"  student search trial {record.number}: {record.state}"
                          + (f", score {record.score:.4f}" if record.ok else ""), highlight=False)

    backend.optimize(runner, trials, None, on_trial)
    found = backend.best()
    if found is None:
        raise AutomtlError(f"{space_path}: no trial of the student search completed; see the messages above")
    return dict(found.params), f"the best of a {trials}-trial search over {space_path} (#{found.number})"


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    """The timing order of each round: every model takes every position in turn (a model always
    timed right after a large one would pay for the caches it evicted)."""
    return [names[r % len(names):] + names[:r % len(names)] for r in range(rounds)]


def serving_latency(folders: dict[str, Path], rows: dict[str, np.ndarray], rounds: int = 15) -> dict[str, dict[str, float]]:
    """Median milliseconds per call of each folder's ``serving_default`` at batch 1 and batch 256
    (plain TensorFlow), measured side by side: every round times each model in turn, starting
    from the next model each round (so none always follows the largest), and load on a shared
    machine falls on all of them alike."""
    import tensorflow as tf

    fns = {name: tf.saved_model.load(str(Path(f) / "saved_model")).signatures["serving_default"]
           for name, f in folders.items()}
    out: dict[str, dict[str, float]] = {name: {} for name in fns}
    n = len(next(iter(rows.values())))
    for batch, calls in ((1, 20), (256, 3)):
        idx = np.arange(batch) % n
        feed = {k: tf.constant(v[idx].astype(str) if v.dtype == object else v[idx]) for k, v in rows.items()}
        for fn in fns.values():
            for _ in range(3):
                fn(**feed)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for order in rotations(list(fns), rounds):
            for name in order:
                fn = fns[name]
                started = time.perf_counter()
                for _ in range(calls):
                    fn(**feed)
                times[name].append((time.perf_counter() - started) * 1000 / calls)
        for name in fns:
            out[name][f"batch_{batch}"] = statistics.median(times[name])
    return out
