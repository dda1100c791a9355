"""Experiment files: load the YAML, validate it with clear errors, apply defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from automtl.core.registry import AXES
from automtl.errors import ConfigError


#: Experiment and study names: they become folder names (``runs/<name>``, Keras Tuner's project), so
#: letters, digits, ``-``, ``_`` and ``.`` only, no path separator and no leading dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
NAME_RULE = "letters, digits, '-', '_' and '.' only (at most 100), no path separator, no leading dot"


def check_name(value: str, what: str) -> str:
    """``value`` if it is a valid experiment or study name, else a ValueError saying why and what to use."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{what} must be a name: {NAME_RULE}; choose where the run goes with --out "
                         "(search.out), which may be an absolute path")
    return value


def name_from_file(path: Path) -> str:
    """The default experiment name: the file's stem, with what a name cannot hold replaced by '_'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).lstrip(".")[:100]
    return name or "experiment"


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class GroupRule(_Strict):
    """Which group a row belongs to: a column's value, or the part of it a pattern picks.

    ``pattern`` is a regular expression searched in the value's file name (the
    text after the last ``/`` or ``\\``, so it works on paths as written or
    resolved); the group is its first capture group, or the whole match. Tiles
    ``scene07_r2_c3.png`` of one scene: ``pattern: '^([^_]+)_'``.
    """

    column: str
    pattern: str | None = None

    @pydantic.field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        import re

        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v


class DataConfig(_Strict):
    train: Path
    valid: Path | None = None
    valid_fraction: float = pydantic.Field(0.2, description="used when 'valid' is not given; with 'group', of the groups")
    split_seed: int = 0
    group: str | GroupRule | None = pydantic.Field(
        None, description="rows sharing this column's value (one image, patient, user) stay on one side of every split"
    )
    folds: int | None = pydantic.Field(
        None, ge=2, description="cross-validate every trial on K folds of the training file (grouped with 'group')"
    )
    stream: bool | None = pydantic.Field(
        None, description="read the training rows from Parquet in batches every epoch instead of holding them in "
        "memory (default: when the table is larger than AUTOMTL_INMEMORY_MB)"
    )
    sample_rows: int = pydantic.Field(
        100_000, ge=100, description="streamed tables: training rows the encodings and vocabularies are fitted on"
    )

    @property
    def group_rule(self) -> GroupRule | None:
        return GroupRule(column=self.group) if isinstance(self.group, str) else self.group

    @pydantic.model_validator(mode="after")
    def _folds_use_train(self) -> "DataConfig":
        if self.folds is not None and self.valid is not None:
            raise ValueError("'folds' cross-validates the training file, so there is no separate validation file; "
                             "remove 'valid' (or 'folds')")
        return self

    @pydantic.model_validator(mode="after")
    def _stream_splits_by_hash(self) -> "DataConfig":
        if self.stream and self.folds is not None:
            raise ValueError("'stream' reads the rows in batches and splits them by a hash; it cannot cross-validate: "
                             "remove 'folds' (or 'stream')")
        return self

    @pydantic.field_validator("valid_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be between 0 and 1 (exclusive)")
        return v


class PluginConfig(pydantic.BaseModel):
    """A named input or task: ``name``, ``type``, and the plugin's own options."""

    model_config = pydantic.ConfigDict(extra="allow")
    name: str = pydantic.Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    type: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TaskConfig(PluginConfig):
    importance: float = pydantic.Field(1.0, gt=0, allow_inf_nan=False, description="weight of this task in the objective")
    metric: str | None = pydantic.Field(
        None, description="the metric the search optimises for this task (see `automtl plugins --metrics`); default: the "
        "task type's own (accuracy, rmse, ...)"
    )

    @property
    def options(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items()}




#: Trials of a search with neither ``search.trials`` nor ``search.timeout``.
DEFAULT_TRIALS = 20
#: The trial cap of a search whose budget is its time (``search.timeout`` and no ``search.trials``): never reached.
UNBOUNDED_TRIALS = 1_000_000


def fidelity_obstacle(promotes: bool, backend: str, folds: int, objective: str, parallel: bool) -> str:
    """Why a search cannot promote trials to more rows (``search.fidelity: rows``), or "".

    Checked here with what the experiment file says, and again by the search with what it
    learns later (automatic cross-validation folds, parallel workers).
    """
    if not promotes:
        return f"backend '{backend}' cannot run a configuration again on more rows"
    if folds:
        return "a cross-validated search trains each fold on all of its rows"
    if objective == "pareto":
        return "a Pareto search ranks every trial on one front"
    if parallel:
        return "parallel search workers share no promotion queue"
    return ""



class SearchConfig(_Strict):
    backend: str = pydantic.Field(AXES["backend"].default, description="a search backend: see `automtl plugins` (kind backend)")
    objective: Literal["mean", "pareto"] = pydantic.Field(
        "mean", description="mean: one importance-weighted score; pareto: one objective per task"
    )
    algorithm: str | None = pydantic.Field(None, description="default: the backend's own (see `automtl search --help`)")
    trials: int | None = pydantic.Field(
        None, ge=1, description=f"finished trials the study should hold; default {DEFAULT_TRIALS}, or as many as "
        "fit in search.timeout when one is given (the time is the budget)"
    )
    timeout: float | None = pydantic.Field(
        None, gt=0, allow_inf_nan=False, description="seconds of wall time for the whole command: trials, baselines, "
        "ensemble, refit and export (a share is kept for what follows the trials)"
    )
    epochs: int = pydantic.Field(30, ge=1)
    patience: int | None = pydantic.Field(8, ge=1)
    pruner: str | None = pydantic.Field(
        None, description="stops poor trials early, one of the backend's pruners (none: never); default: the "
        "backend's (median for optuna, none for keras-tuner and for objective pareto)"
    )
    fidelity: Literal["auto", "rows", "none"] = pydantic.Field(
        "auto", description="rows: new configurations train on 1/9 of the training rows and the best third of each "
        "rung moves up to 1/3 and then all rows (successive halving); auto: rows under a time budget (--timeout, "
        "no trial count) when a ninth of the training rows is at least 1,000; none: every trial sees all rows"
    )
    pruner_warmup: int | None = pydantic.Field(
        None, ge=0, description="epochs every trial trains before it can be pruned (default: a quarter of epochs)"
    )
    seed: int = 0
    study: str | None = None
    storage: str | None = None
    out: Path | None = None
    trials_per_process: int = pydantic.Field(
        25, ge=0, description="trials run in a trial process replaced after this many (0: in the search process)"
    )
    device: Literal["auto", "cpu", "gpu"] = pydantic.Field("auto", description="auto: a GPU when TensorFlow sees one")
    precision: Literal["auto", "float32", "mixed"] = pydantic.Field(
        "auto", description="auto: mixed_float16 on GPUs of compute capability >= 7.0, else float32"
    )
    workers: int | Literal["auto"] = pydantic.Field(
        1, description="search workers sharing the study (auto: one per GPU, 1 without GPUs)"
    )
    heartbeat_interval: int = pydantic.Field(
        10, ge=1, description="seconds between a running trial's heartbeats in the study storage"
    )
    grace_period: int | None = pydantic.Field(
        None, ge=1, description="a running trial without a heartbeat for this long is failed and retried (default 3x interval)"
    )
    latency_objective: bool = pydantic.Field(
        False, description="pareto only: each trained model's serving latency (batch 1, ms) as one more objective, minimised"
    )
    export_formats: list[str] = pydantic.Field(
        ["saved_model"], description="formats written to best/: the SavedModel always, and any installed export format "
        "(`automtl plugins`, kind format: onnx needs the 'onnx' extra)"
    )
    baselines: Literal["auto", "search", "off"] = pydantic.Field(
        "auto", description="single-task baselines: auto (each task retrained alone with the best trial's "
        "configuration), search (a single-task search per task) or off"
    )
    baseline_trials: int | None = pydantic.Field(
        None, ge=1, description="trials of each single-task search (baselines: search); default trials / tasks"
    )
    ensemble: int | None = pydantic.Field(
        None, ge=0, description="ensemble size K (greedy selection with replacement over the completed trials); "
        "default 5 when at least 2 trials completed; 0 turns it off"
    )
    refit: bool = pydantic.Field(
        True, description="before exporting best/, train the best trial's parameters once more on the training "
        "and validation rows together for its best epoch count (only where the validation rows were split off "
        "the training file); false exports the trial's own model"
    )

    @property
    def max_trials(self) -> int:
        """The trial cap the backends run to: ``trials``, else unbounded under a timeout, else the default."""
        if self.trials is not None:
            return self.trials
        return UNBOUNDED_TRIALS if self.timeout is not None else DEFAULT_TRIALS

    @property
    def time_is_budget(self) -> bool:
        """No trial count was given and a timeout was: the deadline decides how many trials run."""
        return self.trials is None and self.timeout is not None

    @pydantic.field_validator("study")
    @classmethod
    def _study_name(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, "the study name (--study)")

    @pydantic.field_validator("workers")
    @classmethod
    def _workers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive number or 'auto'")
        return v

    @pydantic.field_validator("export_formats")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        from automtl.core import registry

        known = ["saved_model", *registry.names("format")]
        unknown = [f for f in v if f not in known]
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(map(repr, unknown))}; expected any of {', '.join(known)}")
        return v

    @pydantic.field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from automtl.core import registry

        known = registry.names("backend")
        if v not in known:
            raise ValueError(f"unknown backend '{v}'; known backends: {', '.join(known) or '(none installed)'}")
        return v

    @pydantic.model_validator(mode="after")
    def _backend_can(self) -> "SearchConfig":
        """The algorithm and objective the backend declares it can run (never a silent substitute)."""
        from automtl.core import registry

        spec = registry.member("backend", self.backend)
        if self.algorithm is None:
            self.algorithm = spec.default_algorithm
        if self.pruner is None:
            self.pruner = spec.default_pruner(self.objective)
        if self.pruner_warmup is None:
            self.pruner_warmup = max(1, self.epochs // 4)
        problem = spec.problem(self.algorithm, self.objective, self.pruner)
        if problem is not None:
            raise ValueError(problem)
        if self.fidelity == "rows":  # what the search itself knows only later is checked again there
            why = fidelity_obstacle(spec.promotes, spec.name, 0, self.objective, False)
            if why:
                raise ValueError(f"search.fidelity 'rows': {why}; use search.fidelity none (or auto)")
        return self


class Experiment(_Strict):
    name: str = "experiment"
    data: DataConfig
    inputs: list[PluginConfig] = pydantic.Field(min_length=1)
    tasks: list[TaskConfig] = pydantic.Field(min_length=1)
    space: str = pydantic.Field("auto", description="a space file, a ready-made space's name, or auto")
    search: SearchConfig = SearchConfig()
    #: where relative paths resolve from (the experiment file's folder)
    base_dir: Path = Path(".")

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "the experiment name")

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> "Experiment":
        for what, items in (("inputs", self.inputs), ("tasks", self.tasks)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate names {dupes}")
        if self.search.objective == "pareto" and len(self.tasks) < 2:
            raise ValueError("search.objective 'pareto' needs at least two tasks (one objective per task)")
        if self.search.latency_objective:
            if self.search.objective != "pareto":
                raise ValueError("search.latency_objective needs search.objective 'pareto' (latency is one objective "
                                 "of the Pareto front, next to each task's score)")
            if any(t.name == "latency" for t in self.tasks):
                raise ValueError("search.latency_objective: a task is named 'latency', the objective's name; rename it")
        if self.data.folds is not None:
            from automtl.core import registry

            spec = registry.member("backend", self.search.backend)
            if not spec.cross_validates(self.search.algorithm):
                others = [a for a in spec.algorithms if spec.cross_validates(a)]
                raise ValueError(f"data.folds with {spec.name}'s {self.search.algorithm}: its trials continue from an "
                                 "earlier trial's model, and a cross-validated trial keeps no single model; use "
                                 + (f"algorithm {' or '.join(others)}, or " if others else "") + "another backend")
        return self

    def path(self, p: Path | str) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def run_dir(self) -> Path:
        return self.path(self.search.out) if self.search.out else Path("runs") / self.name

    @property
    def study_name(self) -> str:
        return self.search.study or self.name


#: Union members pydantic names in an error's location (``data.group.str``): not keys of the file.
_UNION_TAGS = {"str", "int", "float", "bool", "GroupRule"}
_PLAIN_TYPES = ("str", "int", "float", "bool")


def format_validation_error(source: str, exc: pydantic.ValidationError, options: dict[str, Any] | None = None) -> str:
    """One line per problem: ``file: key.path: what was expected``; a ``search.*`` value given on the
    command line (``options``) is blamed on its option (``--timeout nan: ...``), not on the file."""
    options = options or {}
    errors = exc.errors()
    lines = []
    for err in errors:
        if _wrong_union_member(err, errors):
            continue
        loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after",) and p not in _UNION_TAGS)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        detail = f" (got {got!r})" if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) else ""
        key = err["loc"][1] if len(err["loc"]) >= 2 and err["loc"][0] == "search" else None
        if key in options:
            value = options[key]
            shown = repr(value) if isinstance(value, str) else str(value)
            lines.append(f"--{str(key).replace('_', '-')} {shown}: {msg}")
        else:
            lines.append(f"{source}: {loc or '(top level)'}: {msg}{detail}")
    return "\n".join(dict.fromkeys(lines))


def _wrong_union_member(err: Any, errors: list[Any]) -> bool:
    """An error of the union member the value plainly is not (a mapping checked as ``str``), when another
    member explains the same value: ``data.group: {pattern: '('}`` gets the pattern's error alone."""
    loc = err["loc"]
    if not loc or loc[-1] not in _PLAIN_TYPES or not isinstance(err.get("input"), dict):
        return False
    return any(other is not err and other["loc"][: len(loc) - 1] == loc[:-1] and len(other["loc"]) >= len(loc)
               for other in errors)


def read_yaml(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{what} is a folder, expected a YAML file: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None


def load_experiment(path: Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate an experiment file; ``overrides`` are ``search.*`` values from the CLI."""
    raw = read_yaml(path, "experiment file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys data, inputs, tasks, got {type(raw).__name__}")
    raw.setdefault("name", name_from_file(path))
    return build_experiment(raw, str(path), Path(path).resolve().parent, overrides)


def build_experiment(raw: dict[str, Any], source: str, base_dir: Path, overrides: dict[str, Any] | None = None) -> Experiment:
    raw = dict(raw)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "space" in overrides:
        raw["space"] = overrides.pop("space")
    search = dict(raw.get("search") or {})
    search.update(overrides)
    raw["search"] = search
    raw["base_dir"] = base_dir
    try:
        return Experiment.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, overrides)) from None
