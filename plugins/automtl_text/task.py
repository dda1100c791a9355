"""The ``text`` task: one tag for every token (slot filling, named entities, ...).

Targets are ``[n, length]`` tag ids with a mask of the same shape: padding
positions and untagged rows are masked out of the loss and the metrics.
Tags line up with the model's tokens through :func:`automtl_text.tags.align`,
which uses the serving tokeniser. The head's raw output carries the token
mask of the "sequence" view as its last channel, so the exported model can
return ``""`` at padding positions without seeing the raw input.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pydantic

from automtl.api import DataError, HeadParams, Options, Table, Targets, Task, dense_block

from automtl_text.cells import text_column, tags_of, tokens_of
from automtl_text.tags import TagError, align, check_iob2, span_scores

log = logging.getLogger("automtl")


class TextTaskOptions(Options):
    tokens: str = pydantic.Field("tokens", description="column of token lists (or texts split by the tokeniser)")
    tags: str = pydantic.Field("tags", description="column of tag lists (or space-separated tags)")
    scheme: Literal["iob2", "none"] = "iob2"
    repair: bool = pydantic.Field(False, description="turn an I-X that opens a span into B-X instead of refusing it")
    max_length: int = pydantic.Field(128, ge=1, description="tokens beyond this are not tagged")


class TextTask(Task):
    Options = TextTaskOptions
    view = "sequence"
    primary_metric = "span_f1"
    direction = "maximize"
    #: The ``text`` input this task tags (set by that input's ``prepare``), whose
    #: raw strings the exported model splits into the ``tokens`` output.
    text_input: str | None = None

    def __init__(self, name: str, options: Any = None) -> None:
        super().__init__(name, options)
        if self.options.scheme == "none":
            self.primary_metric = "token_accuracy"

    def _owner(self) -> str:
        return f"task '{self.name}'"

    # -- labels -----------------------------------------------------------------------
    def _rows(self, data: Table) -> list[list[str] | None]:
        """Per row, the tags aligned to model tokens (``None`` for untagged rows); every error names the row."""
        opts, owner = self.options, self._owner()
        token_col = text_column(data, opts.tokens, owner)
        tag_col = data.column(opts.tags, needed_by=owner)
        if tag_col.dtype.kind in "fiub" and not np.isnan(tag_col.astype(float)).all():
            raise DataError(f"{data.source}: column '{opts.tags}' (needed by {owner}) holds numbers, not tags")
        rows: list[list[str] | None] = []
        repaired = 0
        for i in range(len(data)):
            tags = tags_of(data, tag_col, i, opts.tags, owner) if tag_col.dtype == object else None
            if tags is None:  # an untagged row: masked out, and its tokens are not needed
                rows.append(None)
                continue
            words = tokens_of(data, token_col, i, opts.tokens, owner)
            where = f"{data.source}: {data.row_label(i)}: task '{self.name}'"
            if len(tags) != len(words):
                raise DataError(f"{where}: {len(words)} tokens in '{opts.tokens}' but {len(tags)} tags in "
                                f"'{opts.tags}'; every token needs exactly one tag")
            try:
                if opts.scheme == "iob2":
                    tags, fixed = check_iob2(tags, opts.repair)
                    repaired += fixed
                rows.append(align(words, tags, opts.scheme))
            except TagError as exc:
                raise DataError(f"{where}: column '{opts.tags}': {exc}") from None
        if repaired:
            log.warning("%s: %s: repaired %d tag(s) that opened a span with I-; read as B-", data.source, owner, repaired)
        return rows

    def prepare(self, train: Table) -> None:
        rows = [r for r in self._rows(train) if r is not None]
        if not rows:
            raise DataError(f"{train.source}: {self._owner()} has no tagged rows in the training data")
        found = {t for r in rows for t in r}
        self.classes = (["O"] if "O" in found else []) + sorted(found - {"O"})
        self.index = {t: i for i, t in enumerate(self.classes)}
        self.length = min(self.options.max_length, max(len(r) for r in rows))

    def targets(self, data: Table) -> Targets:
        n, length = len(data), self.length
        y = np.zeros((n, length), np.int32)
        mask = np.zeros((n, length), bool)
        unknown = 0
        for i, row in enumerate(self._rows(data)):
            if row is None:
                continue
            for j, tag in enumerate(row[:length]):
                if tag in self.index:
                    y[i, j], mask[i, j] = self.index[tag], True
                else:
                    unknown += 1
        if unknown:
            log.warning("%s: %s: %d token(s) carry tags not seen in training; they are left out of this task's "
                        "loss and metrics", data.source, self._owner(), unknown)
        return Targets(y=y, mask=mask)

    # -- model ------------------------------------------------------------------------
    def build_head(self, features: Any, params: HeadParams) -> Any:
        import keras

        from automtl_text.layers import SplitMask

        x, present = SplitMask(self.length, name="split_mask")(features)
        x = dense_block(x, params.units, params.depth, params.dropout, params.l2, name="hidden")
        logits = keras.layers.Dense(len(self.classes), name="logits")(x)
        return keras.layers.Concatenate(name="logits_and_mask")([logits, present])

    def loss(self, y_true: Any, y_pred: Any) -> Any:
        import keras

        logits = keras.ops.cast(y_pred[..., :-1], "float32")
        return keras.ops.sparse_categorical_crossentropy(y_true, logits, from_logits=True)

    def evaluate(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        m = mask > 0
        rows = np.flatnonzero(m.any(axis=1))
        if not len(rows):
            return {self.primary_metric: float("nan"), "labelled": 0.0}
        pred = y_pred[..., :-1].argmax(axis=-1)
        metrics = {"token_accuracy": float((pred[m] == y_true[m]).mean()), "labelled": float(len(rows))}
        if self.options.scheme == "iob2":
            names = np.array(self.classes, dtype=object)
            true_seqs = [list(names[y_true[i][m[i]]]) for i in rows]
            pred_seqs = [list(names[pred[i][m[i]]]) for i in rows]
            metrics.update(span_scores(true_seqs, pred_seqs))
        return metrics

    def postprocess(self, raw: Any) -> dict[str, Any]:
        import tensorflow as tf

        raw = tf.cast(raw, tf.float32)
        present = raw[..., -1] > 0.5
        tag_id = tf.argmax(raw[..., :-1], axis=-1, output_type=tf.int32)
        names = tf.constant(self.classes)
        return {
            "tags": tf.where(present, tf.gather(names, tag_id), tf.constant("")),
            "tag_id": tf.where(present, tag_id, -1),
            "length": tf.reduce_sum(tf.cast(present, tf.int32), axis=-1),
        }

    def postprocess_with_inputs(self, raw: Any, inputs: Any) -> dict[str, Any]:
        """The tags, plus the tokens they belong to (``""`` where padded), cut from the raw text."""
        out = self.postprocess(raw)
        if self.text_input in inputs:
            from automtl_text.tokens import tf_tokenize

            words = tf_tokenize(inputs[self.text_input], lowercase=False)
            out["tokens"] = words.to_tensor(default_value="", shape=[None, self.length])
        return out

    def label_outputs(self) -> dict[str, tuple[str, list[str]]]:
        return {"tags": ("tag_id", list(self.classes))}

    # -- ensembles and distillation ------------------------------------------------------
    def combine(self, raw_outputs: Any, weights: Any) -> Any:
        """Per token, the weighted mean of the members' tag probabilities (as logits again);
        the token mask channel is the same in every member (one tokeniser)."""
        import tensorflow as tf

        total = float(sum(weights))
        raws = [tf.cast(r, tf.float32) for r in raw_outputs]
        p = tf.add_n([float(w) / total * tf.nn.softmax(r[..., :-1]) for r, w in zip(raws, weights)])
        return tf.concat([tf.math.log(tf.maximum(p, 1e-12)), raws[0][..., -1:]], axis=-1)

    def distill_targets(self, teacher_raw: np.ndarray, temperature: float) -> Targets:
        """Per real token, the teacher's tag probabilities softened by ``temperature``."""
        z = teacher_raw[..., :-1].astype(np.float64) / temperature
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        soft = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        return Targets(y=soft, mask=(teacher_raw[..., -1] > 0.5).astype(np.float32))

    def distill_loss(self, soft: Any, y_pred: Any, temperature: float) -> Any:
        import keras

        logits = keras.ops.cast(y_pred[..., :-1], "float32") / temperature
        return float(temperature) ** 2 * keras.ops.categorical_crossentropy(soft, logits, from_logits=True)

    def register_keras_objects(self) -> None:
        from automtl_text import layers  # noqa: F401  (registering is importing)

    def describe(self) -> dict[str, Any]:
        return {"scheme": self.options.scheme, "tags": list(self.classes), "max_tokens": self.length}
