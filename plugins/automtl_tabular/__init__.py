"""Built-in input types: ``tabular`` (CSV/Parquet columns) and ``array`` (NPZ arrays).

Normalisation and category lookups are layers of the model, built from
statistics learned on the training split, so exported models take raw values.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Mapping

import numpy as np

import pydantic

from automtl.api import (ConfigError, InputEncoder, InputSpec, Options, ParamSpec, PortableInput, Table, TrialParams,
                         as_float, is_missing)


NUMERIC_ENCODINGS = ("standard", "robust", "quantile", "ple", "periodic")
CATEGORICAL_ENCODINGS = ("one_hot", "embedding")
#: Levels of the training-quantile sketch each numeric column keeps (quantile and PLE encodings).
QUANTILE_LEVELS = 1001
#: Searched parameters (the ``tabular.*`` values override the options of the same meaning).
PARAMETERS = {
    "tabular.numeric": NUMERIC_ENCODINGS,
    "tabular.categorical": CATEGORICAL_ENCODINGS,
    "tabular.numeric_bins": ParamSpec("tabular.numeric_bins", 16, low=2, high=256, integer=True,
                                      doc="PLE bins / periodic frequencies per numeric column"),
    "tabular.embedding_dim": ParamSpec("tabular.embedding_dim", 8, low=1, high=256, integer=True,
                                       doc="size of a category embedding and of a column's periodic embedding"),
    "tabular.periodic_sigma": ParamSpec("tabular.periodic_sigma", 0.1, low=1e-4, high=100.0,
                                        doc="scale of the initial periodic frequencies"),
}


class TabularOptions(Options):
    numeric: list[str] = []
    categorical: list[str] = []
    max_categories: int = pydantic.Field(100, ge=1, description="most frequent categories kept per column")
    min_count: int = pydantic.Field(5, ge=1, description="categories seen fewer times in training share one bucket")
    numeric_encoding: Literal["standard", "robust", "quantile", "ple", "periodic"] = "standard"
    categorical_encoding: Literal["one_hot", "embedding"] = "one_hot"
    numeric_bins: int = pydantic.Field(16, ge=2, le=256, description="PLE bins / periodic frequencies per column")
    embedding_dim: int = pydantic.Field(8, ge=1, le=256, description="size of a learned category or PLR embedding")
    periodic_sigma: float = pydantic.Field(0.1, gt=0, description="scale of the initial periodic frequencies")


class TabularInput(InputEncoder):
    """Numeric columns (glob patterns allowed) and categorical columns from a table.

    Numeric encodings (``tabular.numeric``): ``standard`` (z-scores), ``robust``
    (centred on the training median, scaled by the interquartile range, then
    smoothly clipped to about +-3: RealMLP's defence against heavy tails and
    outliers, Holzmueller et al. 2024), ``quantile``
    (through the training quantiles to a normal), ``ple`` (piecewise-linear
    encoding on ``tabular.numeric_bins`` quantile bins) and ``periodic`` (learned
    periodic embeddings + linear + ReLU, ``tabular.embedding_dim`` per column).
    Categorical encodings (``tabular.categorical``): ``one_hot`` or a learned
    ``embedding``. Categories seen fewer than ``min_count`` times in training and
    unseen ones share one out-of-vocabulary bucket; a missing cell is its own
    category when training has enough of them. Each numeric column with missing
    cells in training gets a 0/1 missing-value indicator. Everything is fitted on
    the training split and lives in the model, which takes raw values.
    """

    Options = TabularOptions
    #: a ninth of a table's rows ranks MLP configurations (multi-fidelity search by rows)
    subsample_ranks = True
    small_data_folds = True
    streams_from_table = True
    parameters = PARAMETERS

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        if not self.options.numeric and not self.options.categorical:
            raise ConfigError(f"input '{name}': give at least one column under 'numeric' or 'categorical'")

    def auto_space(self) -> dict[str, Any]:
        """Encodings searched only for the column kinds this input has."""
        space = super().auto_space()
        params = dict(space.get("parameters", {}))
        if not self.options.numeric:
            params = {k: v for k, v in params.items() if k not in ("tabular.numeric", "tabular.numeric_bins",
                                                                   "tabular.periodic_sigma")}
        if not self.options.categorical:
            params.pop("tabular.categorical", None)
        start = [{k: v for k, v in point.items() if k in params} for point in space.get("start", [])]
        unique = [dict(t) for t in dict.fromkeys(tuple(sorted(p.items())) for p in start)]
        return {**space, "parameters": params, "start": unique}

    def prepare(self, train: Table) -> None:
        owner = f"input '{self.name}'"
        self.numeric, self.categorical = train.match_each(self.options.numeric, self.options.categorical,
                                                          needed_by=owner)
        if self.numeric:
            values = self._numeric(train)
            self.mean = np.nan_to_num(np.nanmean(values, axis=0)) if len(values) else np.zeros(values.shape[1])
            self.variance = _variance(values)
            self.missing_columns = [int(j) for j in np.flatnonzero(np.isnan(values).any(axis=0))]
            self.quantiles = _quantile_sketch(values, self.mean)
        self.vocab: dict[str, list[str]] = {}
        for col in self.categorical:
            raw = train.column(col, needed_by=owner)
            cells = np.array(["" if miss else str(v).strip() for v, miss in zip(raw, is_missing(raw))], dtype=object)
            uniq, counts = np.unique(cells.astype(str), return_counts=True)
            order = np.argsort(-counts, kind="stable")
            kept = [int(i) for i in order if counts[i] >= self.options.min_count][: self.options.max_categories]
            kept = kept or [int(i) for i in order[:1]]  # all rare (an id-like column): keep the commonest
            self.vocab[col] = [str(uniq[i]) for i in kept]

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

    def settings(self, params: TrialParams) -> dict[str, Any]:
        """This trial's encodings: searched values over options."""
        o = self.options
        return {
            "numeric": str(params.get("tabular.numeric", o.numeric_encoding)),
            "categorical": str(params.get("tabular.categorical", o.categorical_encoding)),
            "bins": int(params.get("tabular.numeric_bins", o.numeric_bins)),
            "dim": int(params.get("tabular.embedding_dim", o.embedding_dim)),
            "sigma": float(params.get("tabular.periodic_sigma", o.periodic_sigma)),
        }

    def build(self, inputs: Mapping[str, Any], params: TrialParams) -> dict[str, Any]:
        import keras

        from automtl.api import NanToZero

        from . import layers

        s = self.settings(params)
        if s["numeric"] not in NUMERIC_ENCODINGS or s["categorical"] not in CATEGORICAL_ENCODINGS:
            raise ValueError(f"input '{self.name}': unknown encoding {s['numeric']!r} / {s['categorical']!r}")
        parts = []
        if self.numeric:
            raw = inputs[self.name]
            if s["numeric"] == "quantile":
                parts.append(layers.QuantileNormal(self.quantiles, name=f"{self.name}_quantile")(raw))
            elif s["numeric"] == "ple":
                parts.append(layers.PiecewiseLinear(self.bin_edges(s["bins"]), name=f"{self.name}_ple")(raw))
            elif s["numeric"] == "robust":
                center, scale = self.robust_scaling()
                x = keras.layers.Normalization(mean=center, variance=scale**2, name=f"{self.name}_robust")(raw)
                x = NanToZero(name=f"{self.name}_impute")(x)
                parts.append(layers.SmoothClip(name=f"{self.name}_clip")(x))
            else:
                x = keras.layers.Normalization(mean=self.mean, variance=self.variance, name=f"{self.name}_norm")(raw)
                x = NanToZero(name=f"{self.name}_impute")(x)
                if s["numeric"] == "periodic":
                    x = layers.PeriodicEmbedding(s["bins"], s["sigma"], s["dim"], l2=params.l2,
                                                 name=f"{self.name}_periodic")(x)
                parts.append(x)
            if self.missing_columns:
                parts.append(layers.MissingIndicator(self.missing_columns, name=f"{self.name}_missing")(raw))
        for col in self.categorical:
            key = self._key(col)
            if s["categorical"] == "one_hot":
                lookup = keras.layers.StringLookup(vocabulary=self.vocab[col], output_mode="one_hot",
                                                   name=f"{key}_lookup")
                parts.append(lookup(inputs[key]))
            else:
                ids = keras.layers.StringLookup(vocabulary=self.vocab[col], name=f"{key}_lookup")(inputs[key])
                emb = keras.layers.Embedding(len(self.vocab[col]) + 1, s["dim"], name=f"{key}_embedding")(ids)
                parts.append(keras.layers.Flatten(name=f"{key}_flatten")(emb))
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
            feed = "one_hot" if layer.output_mode == "one_hot" else "cast"  # ids into a learned embedding
            out.append(PortableInput(key, f"{key}_ids", "int32", (), layer.name, feed, (step,)))
        return out

    def bin_edges(self, bins: int) -> np.ndarray:
        """``[columns, bins + 1]`` PLE bin edges from the training quantiles; a column with fewer
        distinct edges repeats its last one (those bins have no width and encode as 0)."""
        levels = np.linspace(0.0, 1.0, bins + 1)
        sketch_levels = np.linspace(0.0, 1.0, len(self.quantiles))
        edges = np.empty((len(self.numeric), bins + 1), np.float32)
        for j in range(len(self.numeric)):
            e = np.unique(np.interp(levels, sketch_levels, self.quantiles[:, j]))
            edges[j] = np.concatenate([e, np.full(bins + 1 - len(e), e[-1])])
        return edges

    def robust_scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Per column: the training median and the interquartile range (half the range where the
        quartiles coincide, as for a mostly-zero count; 1 for a constant column), from the
        training-quantile sketch."""
        q = self.quantiles.astype(np.float64)
        n = len(q) - 1
        center = q[n // 2]
        iqr = q[(3 * n) // 4] - q[n // 4]
        half_range = 0.5 * (q[-1] - q[0])
        scale = np.where(iqr > 0, iqr, np.where(half_range > 0, half_range, 1.0))
        return center.astype(np.float32), scale.astype(np.float32)

    def register_keras_objects(self) -> None:
        from . import layers  # noqa: F401  (registering is importing)

    def describe(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "categorical": {c: self.vocab[c] for c in self.categorical},
                "missing_indicators": [self.numeric[j] for j in self.missing_columns] if self.numeric else []}


def _quantile_sketch(values: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``[QUANTILE_LEVELS, columns]`` training quantiles per column (ignoring missing cells)."""
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
    out = np.empty((QUANTILE_LEVELS, values.shape[1]), np.float32)
    for j in range(values.shape[1]):
        col = values[:, j][~np.isnan(values[:, j])]
        out[:, j] = np.quantile(col, levels) if len(col) else fill[j]
    return out


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
