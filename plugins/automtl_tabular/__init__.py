"""Built-in input types: ``tabular`` (CSV/Parquet columns) and ``array`` (NPZ arrays).

Normalisation and category lookups are layers of the model, built from
statistics learned on the training split, so exported models take raw values.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from automtl.api import (ConfigError, InputEncoder, InputSpec, Options, PortableInput, Table, TrialParams, as_float,
                         is_missing)


class TabularOptions(Options):
    numeric: list[str] = []
    categorical: list[str] = []
    max_categories: int = 50


class TabularInput(InputEncoder):
    """Numeric columns (glob patterns allowed) and categorical columns from a table."""

    Options = TabularOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        if not self.options.numeric and not self.options.categorical:
            raise ConfigError(f"input '{name}': give at least one column under 'numeric' or 'categorical'")

    def prepare(self, train: Table) -> None:
        owner = f"input '{self.name}'"
        self.numeric = train.match(self.options.numeric, needed_by=owner)
        self.categorical = train.match(self.options.categorical, needed_by=owner)
        if self.numeric:
            values = self._numeric(train)
            self.mean = np.nan_to_num(np.nanmean(values, axis=0))
            self.variance = _variance(values)
        self.vocab: dict[str, list[str]] = {}
        for col in self.categorical:
            raw = train.column(col, needed_by=owner)
            present = [str(v).strip() for v, miss in zip(raw, is_missing(raw)) if not miss]
            uniq, counts = np.unique(np.array(present, dtype=object).astype(str), return_counts=True)
            order = np.argsort(-counts, kind="stable")[: self.options.max_categories]
            self.vocab[col] = [str(u) for u in uniq[order]]

    def _numeric(self, data: Table) -> np.ndarray:
        owner = f"input '{self.name}'"
        return np.column_stack([as_float(data, c, needed_by=owner) for c in self.numeric]).astype(np.float32)

    def _key(self, column: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", column)

    def specs(self) -> list[InputSpec]:
        specs = []
        if self.numeric:
            specs.append(InputSpec(self.name, "float32", (len(self.numeric),), {"columns": self.numeric}))
        for col in self.categorical:
            specs.append(InputSpec(self._key(col), "string", (), {"columns": [col]}))
        return specs

    def arrays(self, data: Table) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.numeric:
            out[self.name] = self._numeric(data)
        for col in self.categorical:
            raw = data.column(col, needed_by=f"input '{self.name}'")
            miss = is_missing(raw)
            out[self._key(col)] = np.array(["" if m else str(v).strip() for v, m in zip(raw, miss)], dtype=object)
        return out

    def build(self, inputs: Mapping[str, Any], params: TrialParams) -> dict[str, Any]:
        import keras

        from automtl.api import NanToZero

        parts = []
        if self.numeric:
            x = keras.layers.Normalization(mean=self.mean, variance=self.variance, name=f"{self.name}_norm")(inputs[self.name])
            parts.append(NanToZero(name=f"{self.name}_impute")(x))
        for col in self.categorical:
            key = self._key(col)
            lookup = keras.layers.StringLookup(vocabulary=self.vocab[col], output_mode="one_hot", name=f"{key}_lookup")
            parts.append(lookup(inputs[key]))
        vector = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=f"{self.name}_concat")(parts)
        return {"vector": vector}

    def portable_inputs(self, model: Any) -> list[PortableInput]:
        """A categorical column enters ONNX/LiteRT models as its id: 0 for a value not in the
        vocabulary (or empty), else 1 + its place in the vocabulary (the ``StringLookup``'s ids)."""
        out = []
        for col in self.categorical:
            key = self._key(col)
            layer = model.get_layer(f"{key}_lookup")
            vocab = [str(v) for v in layer.get_vocabulary()][1:]  # id 0: the out-of-vocabulary bucket
            step = {"op": "lookup", "vocabulary": vocab, "first_id": 1, "unknown_id": 0}
            out.append(PortableInput(key, f"{key}_ids", "int32", (), layer.name, "one_hot", (step,)))
        return out

    def describe(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "categorical": {c: self.vocab[c] for c in self.categorical}}


class ArrayOptions(Options):
    array: str


class ArrayInput(InputEncoder):
    """A named numeric array from an NPZ file (any trailing shape), flattened and normalised."""

    Options = ArrayOptions

    def prepare(self, train: Table) -> None:
        values = self._values(train)
        flat = values.reshape(len(values), -1)
        self.shape = tuple(values.shape[1:])
        self.mean = np.nan_to_num(np.nanmean(flat, axis=0))
        self.variance = _variance(flat)

    def _values(self, data: Table) -> np.ndarray:
        return as_float(data, self.options.array, needed_by=f"input '{self.name}'").astype(np.float32)

    def specs(self) -> list[InputSpec]:
        return [InputSpec(self.name, "float32", self.shape, {"array": self.options.array})]

    def arrays(self, data: Table) -> dict[str, np.ndarray]:
        values = self._values(data)
        if tuple(values.shape[1:]) != self.shape:
            raise ConfigError(f"{data.source}: array '{self.options.array}' has shape {values.shape[1:]}, "
                              f"expected {self.shape} as in the training data")
        return {self.name: values}

    def build(self, inputs: Mapping[str, Any], params: TrialParams) -> dict[str, Any]:
        import keras

        from automtl.api import NanToZero

        x = inputs[self.name]
        if len(self.shape) != 1:
            x = keras.layers.Flatten(name=f"{self.name}_flatten")(x)
        x = keras.layers.Normalization(mean=self.mean, variance=self.variance, name=f"{self.name}_norm")(x)
        return {"vector": NanToZero(name=f"{self.name}_impute")(x)}


def _variance(values: np.ndarray) -> np.ndarray:
    """Per-column training variance for the model's Normalization layer; 1 where a column is constant.

    A column constant in training (a pixel always blank) would otherwise be
    divided by ~0 at serving: one non-zero value there sends the model's
    output to thousands (seen on held-out digits).
    """
    var = np.nan_to_num(np.nanvar(values, axis=0), nan=1.0)
    return np.where(var > 0, var, 1.0)
