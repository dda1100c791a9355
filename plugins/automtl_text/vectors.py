"""Pretrained word vectors (GloVe, word2vec or fastText text format, optionally gzipped) for a vocabulary.

One word per line followed by its numbers, separated by spaces; word2vec and
fastText files start with a ``count dimension`` header line, GloVe files do
not. Only the vectors of the vocabulary's words are kept, so a multi-gigabyte
file is streamed, never held.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterable

import numpy as np

from automtl.api import DataError

SUFFIXES = (".txt", ".vec", ".txt.gz", ".vec.gz")


def read_vectors(path: Path, words: Iterable[str]) -> tuple[dict[str, np.ndarray], int]:
    """``{word: vector}`` for the ``words`` found in the file (the first line of a word wins), and the dimension."""
    path = Path(path)
    wanted = set(words)
    found: dict[str, np.ndarray] = {}
    dim: int | None = None
    vectors = 0
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                parts = line.rstrip("\r\n").rstrip(" ").split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    dim = int(parts[1])  # word2vec / fastText header: count and dimension
                    continue
                if len(parts) < 2:
                    if line.strip():
                        raise DataError(f"{path}: line {number}: expected a word and its vector, got {line[:60]!r}")
                    continue
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) < dim + 1 or len(parts) > dim + 1 and _is_number(parts[-dim - 1]):
                    raise DataError(f"{path}: line {number}: {len(parts) - 1} numbers, expected {dim} as on the "
                                    "lines before (every vector must have the same dimension)")
                word = " ".join(parts[: len(parts) - dim])  # a few GloVe words contain spaces
                numbers = parts[len(parts) - dim :]
                kept = word in wanted and word not in found
                # nan, inf and infinity are the only words a number may spell (each holds an 'n'): parse those
                # lines whatever their word, so a broken file is refused before a trial trains on it
                if kept or any("n" in p or "N" in p for p in numbers):
                    vector = _vector(path, number, word, numbers)
                    if kept:
                        found[word] = vector
                vectors += 1
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read the word vectors: {exc}") from None
    if dim is None or not vectors:
        raise DataError(f"{path}: the word-vector file holds no vectors" + (" (only its header line)" if dim else ""))
    return found, dim


def _is_number(text: str) -> bool:
    """A token that reads as a number: one more value than the dimension when it ends a line's word."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _vector(path: Path, line: int, word: str, numbers: list[str]) -> np.ndarray:
    """One line's vector; refused unless every value is a finite number (a nan would make every trial's
    loss nan, burning the whole budget on trials that cannot train)."""
    try:
        vector = np.asarray(numbers, dtype=np.float32)
    except ValueError:
        raise DataError(f"{path}: line {line}: the vector of {word!r} holds a value that is not a number") from None
    if not np.isfinite(vector).all():
        bad = numbers[int(np.flatnonzero(~np.isfinite(vector))[0])]
        raise DataError(f"{path}: line {line}: the vector of {word!r} holds a non-finite value ({bad}); "
                        "every value must be a finite number")
    return vector


def lookup(vocabulary: list[str], vectors: dict[str, np.ndarray]) -> list[np.ndarray | None]:
    """Each vocabulary word's vector: its own, else its lower-case form's (cased files), else None."""
    return [vectors.get(w, vectors.get(w.lower())) for w in vocabulary]


def embedding_table(vocabulary: list[str], vectors: dict[str, np.ndarray], dim: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The embedding matrix for ids ``0`` (padding), ``1`` (unknown word) and the vocabulary, and which
    rows came from the file. Words the file lacks (and the unknown word) get random vectors with the
    spread of the file's vectors; padding is zero."""
    rows = lookup(vocabulary, vectors)
    have = [r for r in rows if r is not None]
    if have:
        stacked = np.stack(have)
        mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
    else:
        mean, std = np.zeros(dim, np.float32), np.full(dim, 0.05, np.float32)
    rng = np.random.default_rng(seed)
    table = (mean + std * rng.standard_normal((len(vocabulary) + 2, dim))).astype(np.float32)
    table[0] = 0.0
    found = np.zeros(len(vocabulary) + 2, dtype=bool)
    for i, r in enumerate(rows):
        if r is not None:
            table[i + 2] = r
            found[i + 2] = True
    return table, found
