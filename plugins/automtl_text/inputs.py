"""The ``text`` input type: raw strings in, a token sequence view and a pooled vector view out.

Vectorisation is a ``TextVectorization`` layer inside the model whose
vocabulary is counted on the training split only, with the tokeniser of
:mod:`automtl_text.tokens`; the exported SavedModel therefore takes raw
strings. After the embedding a searchable sequence encoder (``conv``,
``bigru`` or ``transformer``) takes its depth and width from the trunk
parameters; its layers are offered as blocks, so the searched ``sharing``
scheme can copy them per task (the embedding stays shared). With
``embeddings: PATH`` the embedding layer starts from pretrained word vectors
(GloVe, word2vec or fastText text files), kept frozen or fine-tuned as
``text.freeze_embeddings`` says.

The ``bow`` encoder instead reads each text as a TF-IDF vector over words and
word bigrams (:mod:`automtl_text.bow`) that goes straight to the dense trunk:
no word order beyond bigrams and no sequence view, but an epoch costs about a
second on 8,000 short texts on two CPU cores, whatever their length, and most
of its accuracy comes in the first epoch: the first trial of ``space: auto``.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any, Literal, Mapping

import numpy as np
import pydantic

from automtl.api import (Block, ConfigError, DataError, EncoderBlocks, InputEncoder, InputSpec, Options, ParamSpec,
                         PortableInput, Table, TrialParams)

from automtl_text import tokens
from automtl_text.bow import Terms, fit_terms
from automtl_text.cells import text_column, text_of, tokens_of
from automtl_text.task import TextTask

#: Encoders that read the token sequence and so offer the "sequence" view (tagging needs one).
SEQUENCE_ENCODERS = ("conv", "bigru", "transformer")
#: Every ``text.encoder``: ``bow`` is a TF-IDF vector over words and word bigrams (the "vector" view only).
ENCODERS = ("bow", *SEQUENCE_ENCODERS)
#: Longest sequence used when ``sequence_length`` is not given (longer texts are cut).
DEFAULT_MAX_LENGTH = 128
#: Without a tagging task, the sequence length covers this share of the training texts: a long
#: tail of texts would otherwise make every batch pay for the longest one (text trials cost
#: time in proportion to the length); classifying from the first 95% of a few texts costs little.
LENGTH_PERCENTILE = 95


class TextInputOptions(Options):
    column: str
    encoder: Literal[ENCODERS] = "conv"  # type: ignore[valid-type]  (one list: ENCODERS)
    vocab_size: int = pydantic.Field(20000, ge=1, description="most frequent training tokens (bow: n-grams) kept")
    sequence_length: int | None = pydantic.Field(
        None, ge=1, description="default: 95th percentile of the training lengths (longest with a tagging task), <= 128")
    embedding: int = pydantic.Field(64, ge=1)
    word_dropout: float = pydantic.Field(0.1, ge=0.0, lt=1.0, description="training-time rate of words read as "
                                         "unknown (bow: dropout on the TF-IDF features)")
    lowercase: bool = True
    embeddings: str | None = pydantic.Field(None, description="word vectors: a .txt or .vec file, optionally .gz")
    freeze_embeddings: bool = False


class TextInput(InputEncoder):
    """A text column (strings, or token lists joined by spaces) -> views "sequence" and "vector"
    ("vector" only with the ``bow`` encoder).

    Searched values (``text.encoder``, ``text.vocab_size``,
    ``text.sequence_length``, ``text.embedding``, ``text.word_dropout``,
    ``text.freeze_embeddings``) override the options of the same name; the
    vocabulary size is capped by the number of distinct training tokens. With
    pretrained vectors the embedding width is theirs.
    """

    Options = TextInputOptions
    parameters = {
        "text.encoder": ENCODERS,
        "text.vocab_size": ParamSpec("text.vocab_size", 20000, low=1, integer=True, doc="tokens (bow: n-grams) kept"),
        "text.sequence_length": ParamSpec("text.sequence_length", None, low=1, integer=True, doc="tokens read"),
        "text.embedding": ParamSpec("text.embedding", 64, low=1, integer=True, doc="embedding width"),
        "text.word_dropout": ParamSpec("text.word_dropout", 0.1, low=0, high=1, high_open=True,
                                       doc="training-time rate of words read as unknown (bow: feature dropout)"),
        "text.freeze_embeddings": ParamSpec("text.freeze_embeddings", False, choices=(True, False),
                                            doc="pretrained vectors: keep them (true) or fine-tune"),
    }
    vectors: dict[str, np.ndarray] | None = None
    #: the ``bow`` encoder's n-grams and IDF weights (None when a tagging task reads this input)
    terms: Terms | None = None

    def auto_space(self) -> dict[str, Any]:
        """``space: auto``: the fragment of ``auto_space.yaml``; with pretrained ``embeddings``, whether
        to freeze them is searched and the embedding width is theirs (not searched); with a tagging
        task, ``bow`` (no token sequence) is neither offered nor a start point."""
        fragment = super().auto_space()
        parameters = dict(fragment.get("parameters") or {})
        if self._tagger() is not None:
            encoder = parameters.get("text.encoder")
            if isinstance(encoder, dict) and "choice" in encoder:
                parameters["text.encoder"] = {**encoder, "choice": [e for e in encoder["choice"] if e != "bow"]}
            starts = [p for p in fragment.get("start") or [] if p.get("text.encoder") != "bow"]
            fragment = {**fragment, "start": starts} if starts else {k: v for k, v in fragment.items() if k != "start"}
        if self.options.embeddings is not None:
            parameters.pop("text.embedding", None)
            parameters["text.freeze_embeddings"] = {"choice": [True, False]}
        return {**fragment, "parameters": parameters} if parameters else fragment

    def _tagger(self) -> TextTask | None:
        """The tagging task reading this input, if any (it needs the token sequence)."""
        return next((t for t in self.tasks if isinstance(t, TextTask)), None)

    def _owner(self) -> str:
        return f"input '{self.name}'"

    def texts(self, data: Table) -> list[str]:
        """Every row's text, checked (no empty texts, no non-string values)."""
        col = text_column(data, self.options.column, self._owner())
        return [text_of(data, col, i, self.options.column, self._owner()) for i in range(len(col))]

    def prepare(self, train: Table) -> None:
        tagger = self._tagger()
        if tagger is not None and self.options.encoder not in SEQUENCE_ENCODERS:
            raise ConfigError(f"{self._owner()}: option 'encoder': {self.options.encoder} reads no token sequence, "
                              f"which task '{tagger.name}' tags; use one of {', '.join(SEQUENCE_ENCODERS)}")
        counts: Counter[str] = Counter()
        lengths = []
        docs = []
        for text in self.texts(train):
            toks = tokens.tokenize(text, self.options.lowercase)
            counts.update(toks)
            lengths.append(len(toks))
            docs.append(toks)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.vocabulary = [t for t, _ in ranked[: self.options.vocab_size]]
        self.terms = fit_terms(docs, self.options.vocab_size) if tagger is None else None
        self.longest = longest = max(lengths, default=1)
        tags = tagger is not None  # tagging needs every token
        cover = longest if tags else int(np.ceil(np.percentile(lengths, LENGTH_PERCENTILE))) if lengths else 1
        self.sequence_length = self.options.sequence_length or max(1, min(cover, DEFAULT_MAX_LENGTH))
        if self.options.embeddings is not None:
            self._read_vectors()
        for task in self.tasks:
            if isinstance(task, TextTask):
                task.text_input = self.name
                if task.options.tokens != self.options.column:
                    self._check_alignment(train, task)

    def _read_vectors(self) -> None:
        """The vectors of the vocabulary's words (and their lower-case forms) from the ``embeddings`` file."""
        from automtl_text.vectors import SUFFIXES, lookup, read_vectors

        path = self.resolve_path(self.options.embeddings)
        if not path.is_file():
            raise ConfigError(f"{self._owner()}: option 'embeddings': {path} not found (expected a word-vector "
                              f"file: {', '.join(SUFFIXES)})")
        if not path.name.lower().endswith(SUFFIXES):
            raise ConfigError(f"{self._owner()}: option 'embeddings': {path.name} is not a word-vector text file "
                              f"({', '.join(SUFFIXES)}; binary word2vec files are not read)")
        words = set(self.vocabulary) | {w.lower() for w in self.vocabulary}
        self.vectors, self.vector_dim = read_vectors(path, words)
        found = sum(v is not None for v in lookup(self.vocabulary, self.vectors))
        if self.vocabulary and not found:
            raise DataError(f"{path}: none of the {len(self.vocabulary)} training words has a vector in this file "
                            f"(words such as {', '.join(self.vocabulary[:5])}); is it the data's language?")
        self.coverage = found / max(1, len(self.vocabulary))

    def _check_alignment(self, train: Table, task: TextTask) -> None:
        """A tagging task reading other columns than this input must see the same tokens."""
        col = text_column(train, self.options.column, self._owner())
        words = text_column(train, task.options.tokens, f"task '{task.name}'")
        for i in range(len(train)):
            if words[i] is None or (isinstance(words[i], float) and np.isnan(words[i])):
                continue  # no tokens here: the task does not tag this row
            mine = tokens.tokenize(text_of(train, col, i, self.options.column, self._owner()), lowercase=False)
            theirs = tokens.tokenize(" ".join(tokens_of(train, words, i, task.options.tokens, f"task '{task.name}'")),
                                     lowercase=False)
            if mine != theirs:
                raise DataError(
                    f"{train.source}: {train.row_label(i)}: input '{self.name}' column '{self.options.column}' and "
                    f"task '{task.name}' column '{task.options.tokens}' give different tokens ({mine[:8]} vs "
                    f"{theirs[:8]}); tags must line up with the text the model reads: point both at one column"
                )

    def specs(self) -> list[InputSpec]:
        meta = {"column": self.options.column, "tokenization": tokens.describe(self.options.lowercase)}
        return [InputSpec(self.name, "string", (), meta)]

    def arrays(self, data: Table) -> dict[str, np.ndarray]:
        return {self.name: np.array(self.texts(data), dtype=object)}

    def settings(self, params: TrialParams) -> dict[str, Any]:
        """This trial's encoder settings: searched values over options."""
        vocab = int(params.get("text.vocab_size", self.options.vocab_size))
        encoder = str(params.get("text.encoder", self.options.encoder))
        known = len(self.terms) if encoder == "bow" and self.terms is not None else len(self.vocabulary)
        return {
            "encoder": encoder,
            "vocab_size": max(1, min(vocab, known)),
            "sequence_length": int(params.get("text.sequence_length", self.sequence_length)),
            "embedding": int(params.get("text.embedding", self.options.embedding)),
            "word_dropout": float(params.get("text.word_dropout", self.options.word_dropout)),
            "freeze_embeddings": bool(params.get("text.freeze_embeddings", self.options.freeze_embeddings)),
        } | ({"embedding": self.vector_dim} if self.vectors is not None else {})

    def blocks(self, inputs: Mapping[str, Any], params: TrialParams) -> EncoderBlocks:
        """Vectorising, word dropout and the embedding (shared), then one block per encoder layer;
        the token mask goes to every block."""
        import keras

        from automtl_text import layers

        s = self.settings(params)
        if s["encoder"] not in ENCODERS:
            raise ValueError(f"unknown text encoder '{s['encoder']}'; expected one of {', '.join(ENCODERS)}")
        if s["encoder"] == "bow":
            return self._bag_of_ngrams(inputs, s)
        length, name = s["sequence_length"], self.name
        vectorize = layers.vectorizer(self.vocabulary[: s["vocab_size"]], length, self.options.lowercase,
                                      f"{name}_vectorize")
        ids = vectorize(inputs[name])
        mask = layers.TokenMask(name=f"{name}_mask")(ids)
        if s["word_dropout"] > 0:
            ids = layers.WordDropout(s["word_dropout"], name=f"{name}_word_dropout")(ids)
        if self.vectors is not None:
            from automtl_text.vectors import embedding_table

            table, found = embedding_table(self.vocabulary[: s["vocab_size"]], self.vectors, self.vector_dim)
            embed = layers.PretrainedEmbedding(len(table), self.vector_dim, int((~found).sum()), s["freeze_embeddings"],
                                               table, found, name=f"{name}_embedding")
        else:
            embed = keras.layers.Embedding(s["vocab_size"] + 2, s["embedding"], name=f"{name}_embedding")
        x = embed(ids)
        stack = layers.encoder_blocks(s["encoder"], params.trunk_units, max(1, params.trunk_depth), params.dropout,
                                      params.l2, length, f"{name}_{s['encoder']}")
        return EncoderBlocks(x, [Block(n, make) for n, make in stack], functools.partial(_views, name, mask), (mask,))

    def _bag_of_ngrams(self, inputs: Mapping[str, Any], s: Mapping[str, Any]) -> EncoderBlocks:
        """The ``bow`` encoder: raw strings -> TF-IDF over the training n-grams (+ feature dropout), the
        "vector" view itself; nothing to copy per task (the dense trunk's levels are what sharing copies)."""
        import keras

        from automtl_text import layers

        tagger = self._tagger()
        if tagger is not None:
            raise ValueError(f"{self._owner()}: text encoder 'bow' reads no token sequence, which task "
                             f"'{tagger.name}' tags; use one of {', '.join(SEQUENCE_ENCODERS)}")
        if self.terms is None:
            raise ValueError(f"{self._owner()}: text encoder 'bow' before prepare() counted its terms")
        name, terms = self.name, self.terms.head(s["vocab_size"])
        x = layers.tfidf_vectorizer(terms.terms, terms.idf, self.options.lowercase, f"{name}_tfidf")(inputs[name])
        if s["word_dropout"] > 0:  # one mask per batch: one per example and term cost 0.8 s of a 1.8 s epoch
            x = keras.layers.Dropout(s["word_dropout"], noise_shape=(1, len(terms) + 1),
                                     name=f"{name}_tfidf_dropout")(x)
        return EncoderBlocks(x, [], _vector_view)

    def register_keras_objects(self) -> None:
        from automtl_text import layers  # noqa: F401  (registering is importing)

    def portable_inputs(self, model: Any) -> list[PortableInput]:
        """ONNX/LiteRT models take the token ids ``[n, sequence_length]`` (0 padding, 1 unknown
        word, 2 + place in the vocabulary): the tokeniser's rules, spelled out as steps. A ``bow``
        model has none: the reference preprocessing has no n-gram or TF-IDF step."""
        if any(layer.name == f"{self.name}_tfidf" for layer in model.layers):
            raise ValueError(f"input '{self.name}': the 'bow' text encoder (TF-IDF over word n-grams) has no portable "
                             "form yet; export it as a SavedModel, or search conv or transformer for ONNX/LiteRT")
        layer = model.get_layer(f"{self.name}_vectorize")
        vocab = [str(v) for v in layer.get_vocabulary()]  # ["", "[UNK]", words...]
        length = int(layer.get_config()["output_sequence_length"])
        steps: list[dict[str, Any]] = [{"op": "lowercase_ascii"}] if self.options.lowercase else []
        steps += [
            {"op": "regex_replace", "pattern": f"({tokens.PUNCTUATION})", "rewrite": r" \1 "},
            {"op": "split", "pattern": tokens.WHITESPACE, "rules": f"automtl_text.tokens v{tokens.VERSION}"},
            {"op": "lookup", "vocabulary": vocab[2:], "first_id": 2, "unknown_id": 1},
            {"op": "pad", "length": length, "value": 0},
        ]
        return [PortableInput(self.name, f"{self.name}_ids", "int32", (length,), layer.name, "cast", tuple(steps))]

    def describe(self) -> dict[str, Any]:
        out = {"vocabulary_size": len(self.vocabulary), "sequence_length": self.sequence_length}
        if self.terms is not None:
            out["ngram_terms"] = len(self.terms)  # the bow encoder's words and bigrams
        if self.vectors is not None:
            out |= {"embeddings": str(self.options.embeddings), "embedding_dim": self.vector_dim,
                    "words_with_vectors": round(self.coverage, 4)}
        return out


def _vector_view(x: Any, suffix: str) -> dict[str, Any]:
    """The ``bow`` encoder's TF-IDF vector is its one view: no layer to add per copy."""
    return {"vector": x}


def _views(name: str, mask: Any, x: Any, suffix: str) -> dict[str, Any]:
    """The encoder's output -> the "sequence" view (features and mask) and the pooled "vector" view."""
    from automtl_text import layers

    return {
        "sequence": layers.SequenceView(name=f"{name}_sequence{suffix}")([x, mask]),
        "vector": layers.MaskedPool(name=f"{name}_pool{suffix}")([x, mask]),
    }
