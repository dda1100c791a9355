"""Reading text, token and tag cells from a Table, with errors that name the file, row and column."""

from __future__ import annotations

from typing import Any

import numpy as np

from automtl.api import DataError, Table

from automtl_text.tokens import tokenize

SEQUENCE_TYPES = (list, tuple, np.ndarray)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _where(data: Table, i: int, column: str, owner: str) -> str:
    return f"{data.source}: {data.row_label(i)}: column '{column}' (needed by {owner})"


def text_column(data: Table, column: str, owner: str) -> np.ndarray:
    """A column of texts; numbers where text is expected are refused up front."""
    col = data.column(column, needed_by=owner)
    if col.dtype.kind in "fiub":
        raise DataError(f"{data.source}: column '{column}' (needed by {owner}) holds numbers, not text "
                        f"({data.row_label(0)} holds {col[0]!r})")
    return col


def text_of(data: Table, col: np.ndarray, i: int, column: str, owner: str) -> str:
    """Row ``i`` as one string: a string as is, a list of tokens joined by spaces.

    Empty texts and non-string values are refused, naming the row.
    """
    value = col[i]
    if isinstance(value, str):
        text = value
    elif isinstance(value, SEQUENCE_TYPES):
        text = " ".join(_strings(data, i, column, owner, value, "token"))
    elif _missing(value):
        raise DataError(f"{_where(data, i, column, owner)}: empty text")
    else:
        raise DataError(f"{_where(data, i, column, owner)}: expected a string, got {value!r} "
                        f"({type(value).__name__})")
    if not tokenize(text):
        raise DataError(f"{_where(data, i, column, owner)}: empty text {value!r}")
    return text


def tokens_of(data: Table, col: np.ndarray, i: int, column: str, owner: str) -> list[str]:
    """Row ``i``'s words: a list of strings, or a string split by the serving tokeniser."""
    value = col[i]
    if isinstance(value, str):
        words = tokenize(value, lowercase=False)
    elif isinstance(value, SEQUENCE_TYPES):
        words = _strings(data, i, column, owner, value, "token")
        for j, word in enumerate(words):
            if not tokenize(word):
                raise DataError(f"{_where(data, i, column, owner)}: token {j + 1} is blank ({word!r})")
    elif _missing(value):
        words = []
    else:
        raise DataError(f"{_where(data, i, column, owner)}: expected a list of tokens or a string, got {value!r}")
    if not words:
        raise DataError(f"{_where(data, i, column, owner)}: empty text (no tokens)")
    return words


def tags_of(data: Table, col: np.ndarray, i: int, column: str, owner: str) -> list[str] | None:
    """Row ``i``'s tags (a list, or a space-separated string); ``None`` when the row is untagged."""
    value = col[i]
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, SEQUENCE_TYPES):
        return [t.strip() for t in _strings(data, i, column, owner, value, "tag")]
    raise DataError(f"{_where(data, i, column, owner)}: expected a list of tags, got {value!r}")


def _strings(data: Table, i: int, column: str, owner: str, values: Any, what: str) -> list[str]:
    out = []
    for j, v in enumerate(values):
        if not isinstance(v, str):
            raise DataError(f"{_where(data, i, column, owner)}: {what} {j + 1} is {v!r} "
                            f"({type(v).__name__}); expected a string")
        out.append(v)
    return out
