"""Keras pieces of the text plugins: tokenisation callables, masks, pooling, sequence encoders.

Everything here is registered as serialisable so a saved ``model.keras``
loads again (the exported SavedModel needs none of it: it is a traced graph).
Imported only when a model is built, so that loading the plugins does not
start TensorFlow.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from automtl_text import tokens

PACKAGE = "automtl_text"


@keras.saving.register_keras_serializable(package=PACKAGE)
def standardize_lower(texts: Any) -> Any:
    """``TextVectorization`` standardisation: ASCII lower-case, punctuation split off."""
    return tokens.tf_standardize(texts, lowercase=True)


@keras.saving.register_keras_serializable(package=PACKAGE)
def standardize_keep_case(texts: Any) -> Any:
    """As :func:`standardize_lower`, keeping letter case."""
    return tokens.tf_standardize(texts, lowercase=False)


def vectorizer(vocabulary: list[str], length: int, lowercase: bool, name: str) -> keras.layers.TextVectorization:
    """Raw strings -> token ids ``[batch, length]`` (0 = padding, 1 = unknown word)."""
    return keras.layers.TextVectorization(
        standardize=standardize_lower if lowercase else standardize_keep_case,
        split="whitespace",  # tf.strings.split: the ASCII whitespace of tokens.WHITESPACE
        output_mode="int",
        output_sequence_length=length,
        vocabulary=vocabulary,
        name=name,
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenMask(keras.layers.Layer):
    """Token ids -> 1.0 at real tokens (known or unknown), 0.0 at padding."""

    def call(self, ids: Any) -> Any:
        return ops.cast(ops.greater(ids, 0), self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position (the transformer needs word order)."""

    def __init__(self, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape: tuple) -> None:
        self.positions = self.add_weight(shape=(self.length, input_shape[-1]), initializer="glorot_uniform",
                                         name="positions")

    def call(self, x: Any) -> Any:
        return x + ops.cast(self.positions, x.dtype)[None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


class _ExplicitMask(keras.layers.Layer):
    """Takes ``[x, mask]`` explicitly; an implicit Keras mask (from a GRU) stops here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedPool(_ExplicitMask):
    """``[x, mask]`` -> mean and max over the real tokens, concatenated: the pooled text vector."""

    def call(self, inputs: list) -> Any:
        x, mask = inputs
        m = ops.cast(mask, x.dtype)[..., None]
        mean = ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)
        very_low = ops.cast(-1e4, x.dtype)
        peak = ops.max(ops.where(m > 0, x, very_low), axis=1)
        peak = ops.where(ops.sum(m, axis=1) > 0, peak, ops.zeros_like(peak))
        return ops.concatenate([mean, peak], axis=-1)

    def compute_output_shape(self, input_shape: list) -> tuple:
        x_shape = input_shape[0]
        return (x_shape[0], 2 * x_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class SequenceView(_ExplicitMask):
    """``[x, mask]`` -> the "sequence" view: features zeroed at padding, plus the mask as last channel.

    The last channel lets a tagging head mask its outputs without seeing the
    raw input (see :class:`SplitMask`).
    """

    def call(self, inputs: list) -> Any:
        x, mask = inputs
        m = ops.cast(mask, x.dtype)[..., None]
        return ops.concatenate([x * m, m], axis=-1)

    def compute_output_shape(self, input_shape: list) -> tuple:
        x_shape = input_shape[0]
        return (*x_shape[:-1], x_shape[-1] + 1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SplitMask(keras.layers.Layer):
    """A "sequence" view -> ``(features, mask [batch, length, 1])``, both cut or zero-padded to ``length``."""

    def __init__(self, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length

    def call(self, view: Any) -> Any:
        have = view.shape[1]
        if have is not None and have > self.length:
            view = view[:, : self.length]
        elif have is not None and have < self.length:
            view = ops.pad(view, [[0, 0], [0, self.length - have], [0, 0]])
        return view[..., :-1], view[..., -1:]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.length, input_shape[-1] - 1), (input_shape[0], self.length, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


def _dropout(x: Any, rate: float, name: str) -> Any:
    return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x


def sequence_encoder(x: Any, mask: Any, kind: str, units: int, depth: int, dropout: float, l2: float,
                     length: int, name: str) -> Any:
    """Embedded tokens ``[batch, length, dim]`` -> contextual features ``[batch, length, units]``.

    ``kind`` is ``conv`` (same-padded 1-D convolutions), ``bigru`` (bidirectional
    GRUs) or ``transformer`` (self-attention blocks with position embeddings).
    """
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    if kind == "conv":
        for i in range(depth):
            x = keras.layers.Conv1D(units, 3, padding="same", activation="relu", kernel_regularizer=reg,
                                    name=f"{name}_conv{i}")(x)
            x = _dropout(x, dropout, f"{name}_dropout{i}")
        return x
    is_token = BoolMask(name=f"{name}_bool_mask")(mask)
    if kind == "bigru":
        for i in range(depth):
            gru = keras.layers.GRU(max(4, units // 2), return_sequences=True, kernel_regularizer=reg)
            x = keras.layers.Bidirectional(gru, name=f"{name}_bigru{i}")(x, mask=is_token)
            x = _dropout(x, dropout, f"{name}_dropout{i}")
        return x
    if kind == "transformer":
        heads = next(h for h in (4, 2, 1) if (units % h == 0 and units // h >= 8) or h == 1)
        x = keras.layers.Dense(units, kernel_regularizer=reg, name=f"{name}_project")(x)
        x = PositionEmbedding(length, name=f"{name}_positions")(x)
        for i in range(depth):
            attn = keras.layers.MultiHeadAttention(heads, units // heads, dropout=dropout, kernel_regularizer=reg,
                                                   name=f"{name}_attention{i}")
            a = attn(x, x, query_mask=is_token, value_mask=is_token)
            x = keras.layers.LayerNormalization(name=f"{name}_norm{i}a")(keras.layers.Add()([x, a]))
            f = keras.layers.Dense(2 * units, activation="relu", kernel_regularizer=reg, name=f"{name}_ff{i}a")(x)
            f = _dropout(keras.layers.Dense(units, kernel_regularizer=reg, name=f"{name}_ff{i}b")(f), dropout,
                         f"{name}_dropout{i}")
            x = keras.layers.LayerNormalization(name=f"{name}_norm{i}b")(keras.layers.Add()([x, f]))
        return x
    raise ValueError(f"unknown text encoder '{kind}'; expected conv, bigru or transformer")


@keras.saving.register_keras_serializable(package=PACKAGE)
class BoolMask(keras.layers.Layer):
    """A 0/1 float mask -> booleans, for layers that take ``mask=`` arguments."""

    def call(self, flags: Any) -> Any:  # (an argument named "mask" would mean a Keras mask)
        return ops.greater(flags, 0)

    def compute_output_spec(self, flags: Any) -> Any:
        return keras.KerasTensor(flags.shape, dtype="bool")


@keras.saving.register_keras_serializable(package=PACKAGE)
class WordDropout(keras.layers.Layer):
    """In training, read a random share of known words as the unknown word (id 1).

    Without it a model never meets an unknown word before serving, and new
    words (a city it has not seen) confuse it instead of being read from context.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, ids: Any, training: bool = False) -> Any:
        if not training or self.rate <= 0:
            return ids
        drop = keras.random.uniform(ops.shape(ids), seed=self.seed_generator) < self.rate
        return ops.where(ops.logical_and(drop, ops.greater(ids, 1)), ops.ones_like(ids), ids)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PretrainedEmbedding(keras.layers.Layer):
    """Token ids -> pretrained word vectors.

    Built from ``table`` (``[ids, dim]``) and ``found`` (which rows came from the
    vector file). With ``freeze`` the found rows keep their vectors, and the
    others (words the file lacks, the unknown word) learn theirs: each id reads
    ``table[id]`` (frozen, zero where not found) plus ``learned[slot[id]]``
    (trainable, one row per word not found). Without ``freeze`` the whole table
    trains. The arrays are initial values only; a loaded model reads its weights.
    """

    def __init__(self, input_dim: int, output_dim: int, unknown: int, freeze: bool = False,
                 table: Any = None, found: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_dim, self.output_dim, self.unknown, self.freeze = int(input_dim), int(output_dim), int(unknown), bool(freeze)
        self._table, self._found = table, found

    def _initial(self, kind: str) -> Any:
        import numpy as np

        if self._table is None:
            return "zeros"
        found = np.asarray(self._found, bool)
        if kind == "table":
            values = np.where(found[:, None], self._table, 0.0) if self.freeze else self._table
        elif kind == "learned":
            values = np.concatenate([np.zeros((1, self.output_dim)), self._table[~found]])
        else:  # slot: row of `learned` for each id (0: found in the file)
            values = np.where(found, 0, np.cumsum(~found))
        return lambda shape, dtype=None: ops.convert_to_tensor(np.asarray(values).reshape(shape), dtype=dtype)

    def build(self, input_shape: tuple) -> None:
        self.table = self.add_weight(shape=(self.input_dim, self.output_dim), initializer=self._initial("table"),
                                     trainable=not self.freeze, name="table")
        if self.freeze:
            self.learned = self.add_weight(shape=(self.unknown + 1, self.output_dim),
                                           initializer=self._initial("learned"), name="learned")
            self.slot = self.add_weight(shape=(self.input_dim,), initializer=self._initial("slot"), dtype="int32",
                                        trainable=False, name="slot")

    def call(self, ids: Any) -> Any:
        ids = ops.cast(ids, "int32")
        vectors = ops.take(self.table, ids, axis=0)
        if self.freeze:
            slot = ops.take(self.slot, ids, axis=0)
            own = ops.take(self.learned, slot, axis=0) * ops.cast(ops.greater(slot, 0), self.compute_dtype)[..., None]
            vectors = vectors + own
        return ops.cast(vectors, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "unknown": self.unknown, "freeze": self.freeze}
