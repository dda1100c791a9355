"""The ``bow`` encoder's terms: words and word bigrams, each with its IDF weight.

Counted in Python on the training split, with the tokeniser of
:mod:`automtl_text.tokens`, like the other encoders' vocabularies (so
preparing the data never starts TensorFlow); ranked and weighted as
``TextVectorization(ngrams=2, output_mode="tf_idf").adapt`` would, which a
test checks. The model's ``TextVectorization`` layer receives both as fixed
values, so the exported SavedModel turns raw strings into the same vectors.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from automtl_text import tokens

#: Words and word bigrams: order within a short text often carries the label ("not good").
NGRAMS = (1, 2)


@dataclass(frozen=True)
class Terms:
    """The training n-grams, most frequent first, and their IDF weights (one per term)."""

    terms: list[str]
    idf: np.ndarray

    def __len__(self) -> int:
        return len(self.terms)

    def head(self, n: int) -> "Terms":
        """The ``n`` most frequent terms (the searched ``text.vocab_size``)."""
        return Terms(self.terms[:n], self.idf[:n])


def fit_terms(token_lists: Iterable[list[str]], limit: int) -> Terms:
    """The ``limit`` most frequent n-grams of the documents (ties by the term itself) with
    Keras' IDF, ``log(1 + documents / (1 + documents holding the term))``."""
    counts: Counter[str] = Counter()
    holding: Counter[str] = Counter()
    documents = 0
    for toks in token_lists:
        grams = tokens.ngrams(toks, NGRAMS)
        counts.update(grams)
        holding.update(set(grams))
        documents += 1
    ranked = heapq.nsmallest(limit, counts.items(), key=lambda kv: (-kv[1], kv[0]))
    terms = [t for t, _ in ranked]
    df = np.array([holding[t] for t in terms], dtype=np.float64)
    return Terms(terms, np.log1p(documents / (1.0 + df)).astype(np.float32))
