"""Keras pieces of the text plugins: tokenisation callables, masks, pooling, sequence encoders, TF-IDF.

Everything here is registered as serialisable so a saved ``model.keras``
loads again (the exported SavedModel needs none of it: it is a traced graph).
Imported only when a model is built, so that loading the plugins does not
start TensorFlow.
"""

from __future__ import annotations

import functools
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


def tfidf_vectorizer(terms: list[str], idf: Any, lowercase: bool, name: str) -> keras.layers.TextVectorization:
    """Raw strings -> TF-IDF ``[batch, 1 + len(terms)]`` over words and word bigrams (column 0: terms
    not in ``terms``, weighted by their mean IDF, as ``adapt`` does). The terms and weights are the
    training split's (:func:`automtl_text.bow.fit_terms`), fixed in the layer."""
    return keras.layers.TextVectorization(
        standardize=standardize_lower if lowercase else standardize_keep_case,
        split="whitespace",
        ngrams=2,  # automtl_text.bow.NGRAMS
        output_mode="tf_idf",
        vocabulary=terms,
        idf_weights=idf,
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


def encoder_blocks(kind: str, units: int, depth: int, dropout: float, l2: float, length: int,
                   name: str) -> list[tuple[str, Any]]:
    """The sequence encoder as ``depth`` copyable blocks: ``(name, make)`` pairs, ``make(name)`` a fresh
    layer taking ``[x, mask]`` (embedded tokens ``[batch, length, dim]`` and the 0/1 token mask) and
    returning contextual features ``[batch, length, units]``.

    ``kind`` is ``conv`` (same-padded 1-D convolutions), ``bigru`` (bidirectional
    GRUs) or ``transformer`` (self-attention blocks; the first also projects to
    ``units`` and adds position embeddings).
    """
    if kind not in ("conv", "bigru", "transformer"):
        raise ValueError(f"unknown text encoder '{kind}'; expected conv, bigru or transformer")
    blocks = []
    for i in range(depth):
        if kind == "conv":
            make = functools.partial(_make, ConvEncoderLayer, units=units, dropout=dropout, l2=l2)
        elif kind == "bigru":
            make = functools.partial(_make, GRUEncoderLayer, units=units, dropout=dropout, l2=l2)
        else:
            make = functools.partial(_make, TransformerEncoderLayer, units=units, dropout=dropout, l2=l2,
                                     length=length if i == 0 else 0)
        blocks.append((f"{name}_{kind}{i}", make))
    return blocks


def _make(cls: type, name: str, **config: Any) -> Any:
    return cls(name=name, **config)


class _EncoderLayer(_ExplicitMask):
    """Base of the encoder blocks: ``[x, mask] -> features``, with L2 on kernels and dropout after."""

    def __init__(self, units: int, dropout: float = 0.0, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.rate, self.l2 = int(units), float(dropout), float(l2)
        self.reg = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.drop = keras.layers.Dropout(self.rate, name="dropout") if self.rate > 0 else None

    def _dropped(self, x: Any, training: Any) -> Any:
        return self.drop(x, training=training) if self.drop is not None else x

    def compute_output_shape(self, input_shape: list) -> tuple:
        return (*input_shape[0][:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "dropout": self.rate, "l2": self.l2}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvEncoderLayer(_EncoderLayer):
    """A same-padded width-3 1-D convolution with ReLU."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.conv = keras.layers.Conv1D(self.units, 3, padding="same", activation="relu", kernel_regularizer=self.reg,
                                        name="conv")

    def build(self, input_shape: list) -> None:
        self.conv.build(input_shape[0])

    def call(self, inputs: list, training: Any = None) -> Any:
        return self._dropped(self.conv(inputs[0]), training)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GRUEncoderLayer(_EncoderLayer):
    """A bidirectional GRU (``units / 2`` each way) over the real tokens."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        half = max(4, self.units // 2)
        self.units = 2 * half
        self.bigru = keras.layers.Bidirectional(
            keras.layers.GRU(half, return_sequences=True, kernel_regularizer=self.reg), name="bigru")

    def build(self, input_shape: list) -> None:
        self.bigru.build(input_shape[0])

    def call(self, inputs: list, training: Any = None) -> Any:
        x, mask = inputs
        return self._dropped(self.bigru(x, mask=ops.greater(mask, 0), training=training), training)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerEncoderLayer(_EncoderLayer):
    """Self-attention over the real tokens and a feed-forward layer, each with a residual and layer
    normalisation. With ``length`` > 0 (the first block) it first projects to ``units`` and adds
    learned position embeddings."""

    def __init__(self, units: int, length: int = 0, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.length = int(length)
        heads = next(h for h in (4, 2, 1) if (self.units % h == 0 and self.units // h >= 8) or h == 1)
        if self.length:
            self.project = keras.layers.Dense(self.units, kernel_regularizer=self.reg, name="project")
            self.positions = PositionEmbedding(self.length, name="positions")
        self.attention = keras.layers.MultiHeadAttention(heads, self.units // heads, dropout=self.rate,
                                                         kernel_regularizer=self.reg, name="attention")
        self.norm_a = keras.layers.LayerNormalization(name="norm_a")
        self.ff_a = keras.layers.Dense(2 * self.units, activation="relu", kernel_regularizer=self.reg, name="ff_a")
        self.ff_b = keras.layers.Dense(self.units, kernel_regularizer=self.reg, name="ff_b")
        self.norm_b = keras.layers.LayerNormalization(name="norm_b")

    def build(self, input_shape: list) -> None:
        shape = tuple(input_shape[0])
        if self.length:
            self.project.build(shape)
            shape = (*shape[:-1], self.units)
            self.positions.build(shape)
        self.attention.build(shape, shape)
        self.norm_a.build(shape)
        self.ff_a.build(shape)
        self.ff_b.build((*shape[:-1], 2 * self.units))
        self.norm_b.build(shape)

    def call(self, inputs: list, training: Any = None) -> Any:
        x, mask = inputs
        if self.length:
            x = self.positions(self.project(x))
        is_token = ops.greater(mask, 0)
        a = self.attention(x, x, query_mask=is_token, value_mask=is_token, training=training)
        x = self.norm_a(x + a)
        f = self._dropped(self.ff_b(self.ff_a(x)), training)
        return self.norm_b(x + f)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


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
