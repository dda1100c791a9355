"""Which rows validate: a seeded hold-out or K folds, by row or by group, recorded in ``split.json``.

Rows of one group (the tiles of one image, the visits of one patient) are
not independent: a random row split puts near-copies on both sides and the
validation score flatters. With ``data.group`` every group stays on one side
of every split and ``valid_fraction`` counts groups. The split a run used is
written to ``RUN_DIR/split.json`` and read back on resume, by ``automtl
export`` and by anything that retrains, so they all see the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automtl.data.table import Table, is_missing
from automtl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from automtl.config import DataConfig, GroupRule

SPLIT_FILE = "split.json"
SPLIT_FORMAT = "automtl-split/1"


def split_fraction(table: Table, fraction: float, seed: int) -> tuple[Table, Table]:
    """Hold out ``fraction`` of the rows at random (seeded) for validation."""
    valid_idx = holdout_rows(table, fraction, seed)
    return take_split(table, valid_idx)


def take_split(table: Table, valid_idx: np.ndarray) -> tuple[Table, Table]:
    """``(training rows, validation rows)`` of ``table``, validation rows given by position."""
    is_valid = np.zeros(len(table), dtype=bool)
    is_valid[valid_idx] = True
    return (table.take(np.flatnonzero(~is_valid), f"{table.source} (train split)"),
            table.take(np.flatnonzero(is_valid), f"{table.source} (validation split)"))


def holdout_rows(table: Table, fraction: float, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Sorted positions of the validation rows: ``fraction`` of the rows, or of the groups."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.valid_fraction must be between 0 and 1 (exclusive), got {fraction}")
    if groups is None:
        n = len(table)
        n_valid = int(round(n * fraction))
        if n_valid < 1 or n - n_valid < 1:
            raise DataError(
                f"{table.source}: {n} rows cannot be split with valid_fraction={fraction}; "
                "both parts need at least one row"
            )
        order = np.random.default_rng(seed).permutation(n)
        return np.sort(order[:n_valid])
    names = np.unique(groups)
    n_valid = int(round(len(names) * fraction))
    if n_valid < 1 or len(names) - n_valid < 1:
        raise DataError(f"{table.source}: {len(names)} group(s) cannot be split with valid_fraction={fraction}; "
                        "both parts need at least one group (valid_fraction counts groups with data.group)")
    chosen = names[np.random.default_rng(seed).permutation(len(names))[:n_valid]]
    return np.flatnonzero(np.isin(groups, chosen))


def fold_rows(table: Table, k: int, seed: int, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """The validation rows of each of ``k`` folds; every row (and group) validates in exactly one.

    Groups are shuffled (seeded), then each goes, largest first, to the fold
    with the fewest rows so far, so folds are near equal in rows.
    """
    labels = np.arange(len(table)) if groups is None else groups
    names, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    what = "rows" if groups is None else "groups"
    if len(names) < k:
        raise DataError(f"{table.source}: {len(names)} {what} cannot make data.folds={k} folds; "
                        f"each fold needs at least one of the {what}")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of = np.empty(len(names), dtype=int)
    load = np.zeros(k, dtype=int)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    return [np.flatnonzero(fold_of[inverse] == f) for f in range(k)]


# -- groups -----------------------------------------------------------------------------------
def group_labels(table: Table, rule: "GroupRule") -> np.ndarray:
    """Each row's group as text: the column's value, or what ``rule.pattern`` picks from its file name."""
    where = "data.group"
    col = table.column(rule.column, needed_by=where)
    missing = is_missing(col) if col.ndim == 1 else None
    if missing is None:
        raise DataError(f"{table.source}: column '{rule.column}' (data.group) must hold one value per row")
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{table.source}: {table.row_label(i)}: empty '{rule.column}' (data.group); every row needs "
                        "its group")
    pattern = re.compile(rule.pattern) if rule.pattern else None
    out = np.empty(len(col), dtype=object)
    for i, value in enumerate(col):
        text = _text(value)
        if pattern is not None:
            name = re.split(r"[/\\]", text)[-1]
            m = pattern.search(name)
            if m is None:
                raise DataError(f"{table.source}: {table.row_label(i)}: data.group pattern {rule.pattern!r} does not "
                                f"match {name!r} (the file name of column '{rule.column}')")
            text = m.group(1) if m.re.groups and m.group(1) is not None else m.group(0)
        out[i] = text
    return out.astype(str)


def _text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def check_no_shared_groups(train: Table, valid: Table, rule: "GroupRule") -> None:
    """With a separate validation file, ``data.group`` checks that no group is on both sides."""
    shared = sorted(set(group_labels(train, rule)) & set(group_labels(valid, rule)))
    if shared:
        shown = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        raise DataError(f"{valid.source}: {len(shared)} group(s) of data.group '{rule.column}' are in both the training "
                        f"and the validation file ({shown}); a grouped validation keeps each group on one side")


# -- the recorded split -----------------------------------------------------------------------
@dataclass
class Split:
    """The validation rows (0-based positions in the training table) of a hold-out or of each fold."""

    rows: int
    valid: list[np.ndarray]
    settings: dict[str, Any]
    #: per fold (one for a hold-out), the groups that validate; empty without data.group
    groups: list[list[str]] = field(default_factory=list)
    #: fingerprint of every row's group, so a changed file is noticed on resume
    digest: str = ""
    #: the training table's columns when it was split (with ``rows``: the data's fingerprint); None in
    #: split files written before it was recorded
    columns: list[str] | None = None

    @property
    def folds(self) -> int:
        return len(self.valid) if self.settings.get("folds") else 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": SPLIT_FORMAT, "rows": self.rows, "settings": self.settings,
                               "digest": self.digest, **({"columns": self.columns} if self.columns is not None else {})}
        parts = [{"valid_rows": v.tolist(), **({"valid_groups": g} if self.groups else {})}
                 for v, g in zip(self.valid, self.groups or [[]] * len(self.valid))]
        if self.settings.get("folds"):
            doc["folds"] = parts
        else:
            doc.update(parts[0])
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Split":
        parts = doc["folds"] if "folds" in doc else [doc]
        columns = doc.get("columns")
        return cls(int(doc["rows"]), [_positions(p["valid_rows"]) for p in parts], dict(doc["settings"]),
                   [list(p["valid_groups"]) for p in parts] if "valid_groups" in parts[0] else [],
                   str(doc.get("digest", "")), None if columns is None else [str(c) for c in columns])


def _positions(values: Any) -> np.ndarray:
    """Row positions as read from a split file: whole numbers only (``1.5`` or ``"3"`` is no row)."""
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError("valid_rows must be a list of whole row numbers")
    return np.asarray(values, dtype=np.int64)


#: A training table of at most this many rows, with tabular inputs only, is cross-validated on
#: :data:`AUTO_FOLDS` folds unless the experiment names its split (:func:`names_split`): a 20 %
#: hold-out of it is under 200 rows, on which one row moves an accuracy by half a point or more,
#: so which trial and which ensemble members win is mostly chance, while a trial on such a table
#: costs seconds. (``bench/tabular_quality.py``, penguins: README.)
SMALL_TABLE_ROWS = 1000
AUTO_FOLDS = 5


def names_split(data: "DataConfig") -> bool:
    """Whether the experiment says how to split (``valid``, ``valid_fraction``, ``folds`` or ``group``)."""
    return bool({"valid", "valid_fraction", "folds", "group"} & data.model_fields_set)


def auto_folds(data: "DataConfig", rows: int, cheap_inputs: bool) -> int | None:
    """The folds a small table gets by default, or None: the experiment's own split
    (:func:`names_split`), an input that does not declare ``small_data_folds`` (a trial
    costs more: ``cheap_inputs`` False), more than :data:`SMALL_TABLE_ROWS` rows, or too
    few for ten per fold."""
    if names_split(data) or not cheap_inputs or not 10 * AUTO_FOLDS <= rows <= SMALL_TABLE_ROWS:
        return None
    return AUTO_FOLDS


def split_settings(data: "DataConfig") -> dict[str, Any]:
    """What decides the split; a resumed run must say the same."""
    rule = data.group_rule
    return {"valid_fraction": None if data.folds else data.valid_fraction, "split_seed": data.split_seed,
            "group": None if rule is None else rule.model_dump(exclude_none=True), "folds": data.folds}


def make_split(data: "DataConfig", table: Table) -> Split:
    """A fresh split of the training table by the experiment's settings."""
    rule = data.group_rule
    groups = None if rule is None else group_labels(table, rule)
    if data.folds:
        valid = fold_rows(table, data.folds, data.split_seed, groups)
    else:
        valid = [holdout_rows(table, data.valid_fraction, data.split_seed, groups)]
    named = [sorted(set(groups[v].tolist())) for v in valid] if groups is not None else []
    return Split(len(table), valid, split_settings(data), named, _digest(groups), list(table.names))


def _digest(groups: np.ndarray | None) -> str:
    if groups is None:
        return ""
    return hashlib.sha256("\n".join(groups.tolist()).encode()).hexdigest()[:16]


def write_split(split: Split, run_dir: Path) -> Path:
    """Record ``split`` as ``RUN_DIR/split.json`` unless the run has one (then it is the same split)."""
    path = Path(run_dir) / SPLIT_FILE
    if not path.exists():
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")  # several processes may start at once: same content
        tmp.write_text(json.dumps(split.to_json()))
        os.replace(tmp, path)
    return path


def recorded_split(data: "DataConfig", table: Table, run_dir: Path | None, write: bool = False) -> Split:
    """The run's split: read from ``RUN_DIR/split.json`` if there is one (checked), else made.

    ``write``: record a new split in the run folder (a search does so once its
    backend opened fine; the check before it writes nothing).
    """
    if run_dir is None:
        return make_split(data, table)
    path = Path(run_dir) / SPLIT_FILE
    if not path.exists():
        split = make_split(data, table)
        if write:
            write_split(split, run_dir)
        return split
    try:
        split = Split.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a readable split file ({exc}); it records which rows validate this run: "
                          "restore it, or start a fresh run with another --out") from None
    now = split_settings(data)
    if split.settings != now:
        changed = ", ".join(f"{k}: {split.settings.get(k)!r} -> {now[k]!r}" for k in now if split.settings.get(k) != now[k])
        raise ConfigError(f"{path}: this run was split with other data settings ({changed}); a run keeps its split "
                          "(resume, export and retraining use the same rows): restore the settings or use another --out")
    rule = data.group_rule
    groups = group_labels(table, rule) if rule is not None else None
    if split.rows != len(table) or (groups is not None and split.digest != _digest(groups)):
        raise DataError(f"{table.source}: the training file changed since this run split it ({split.rows} rows then, "
                        f"{len(table)} now{', other groups' if split.rows == len(table) else ''}; see {path}); "
                        "use another --out for new data")
    if split.columns is not None and split.columns != list(table.names):
        gone = [c for c in split.columns if c not in table.names]
        new = [c for c in table.names if c not in split.columns]
        what = "; ".join(part for part in (f"gone: {', '.join(gone)}" if gone else "",
                                             f"new: {', '.join(new)}" if new else "") if part) or "their order changed"
        raise DataError(f"{table.source}: the training file's columns changed since this run split it ({what}; see "
                        f"{path}); use another --out for new data")
    check_split(split, path, groups)
    return split


def check_split(split: Split, path: Path, groups: np.ndarray | None = None) -> None:
    """A recorded split must still describe a split of the data: every list of validation rows in
    range, without repeats, and leaving rows on both sides; with ``groups`` (each row's group), no
    group on both sides. A hand-edited or damaged ``split.json`` is refused, never trained on."""
    fresh = "restore it, or start a fresh run with another --out (the new run splits the data anew)"
    for k, rows in enumerate(split.valid):
        part = f"fold {k + 1}'s valid_rows" if split.folds else "valid_rows"
        if rows.ndim != 1 or not len(rows):
            raise ConfigError(f"{path}: {part} is empty; both sides of a split need rows: {fresh}")
        if rows.min() < 0 or rows.max() >= split.rows:
            bad = int(rows[(rows < 0) | (rows >= split.rows)][0])
            raise ConfigError(f"{path}: {part} holds row {bad}, outside the training file's rows 0-{split.rows - 1}: "
                              f"{fresh}")
        unique, counts = np.unique(rows, return_counts=True)
        if len(unique) < len(rows):
            raise ConfigError(f"{path}: {part} lists row {int(unique[counts > 1][0])} more than once: {fresh}")
        if len(unique) >= split.rows:
            raise ConfigError(f"{path}: {part} holds every row of the training file, leaving none to train on: {fresh}")
        if groups is not None:
            inside = np.zeros(split.rows, dtype=bool)
            inside[rows] = True
            shared = sorted(set(groups[inside].tolist()) & set(groups[~inside].tolist()))
            if shared:
                raise ConfigError(f"{path}: {part} splits group {shared[0]!r} (data.group) between training and "
                                  f"validation rows; a grouped split keeps each group on one side: {fresh}")
    if split.folds:
        seen = np.concatenate(split.valid)
        if len(np.unique(seen)) < len(seen):
            raise ConfigError(f"{path}: a row validates in more than one fold; each row validates in one: {fresh}")
