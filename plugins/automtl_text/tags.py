"""Tag sequences: the BIO (IOB2) scheme check, alignment of tags to model tokens, span metrics."""

from __future__ import annotations

from typing import Sequence

from automtl_text.tokens import tokenize


class TagError(ValueError):
    """A tag sequence that cannot be used; the message says which token and why."""


def check_iob2(tags: Sequence[str], repair: bool) -> tuple[list[str], int]:
    """Validate IOB2 tags (``O``, ``B-TYPE``, ``I-TYPE``); returns the tags and how many were repaired.

    A span must open with ``B-TYPE``; an ``I-TYPE`` after ``O`` or after another
    type breaks the scheme. With ``repair`` it becomes ``B-TYPE`` (the reading
    of the CoNLL evaluation script), otherwise it is refused. Tags of any other
    form are always refused.
    """
    out: list[str] = []
    repaired = 0
    previous = "O"
    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I") or not kind):
            raise TagError(f"tag {i + 1} is {tag!r}; expected 'O', 'B-<type>' or 'I-<type>' (IOB2 scheme)")
        if prefix == "I" and previous not in (f"B-{kind}", f"I-{kind}"):
            if not repair:
                raise TagError(
                    f"tag {i + 1} is {tag!r} but follows {previous!r}: in the IOB2 scheme a span starts with "
                    f"'B-{kind}' (refused; set 'repair: true' on the task to turn such tags into 'B-{kind}')"
                )
            tag = f"B-{kind}"
            repaired += 1
        out.append(tag)
        previous = tag
    return out, repaired


def align(tokens: Sequence[str], tags: Sequence[str], scheme: str) -> list[str]:
    """One tag per model token: a word the tokeniser splits (``"3:30"`` -> ``3 : 30``)
    keeps its tag on the first piece; the other pieces continue the span
    (``I-TYPE``) or, outside a span, are ``O``. With no scheme each piece
    repeats the word's tag.
    """
    out: list[str] = []
    for i, (token, tag) in enumerate(zip(tokens, tags)):
        pieces = tokenize(token)
        if not pieces:
            raise TagError(f"token {i + 1} is blank")
        rest = tag if scheme == "none" else ("O" if tag == "O" else "I-" + tag.partition("-")[2])
        out.append(tag)
        out.extend([rest] * (len(pieces) - 1))
    return out


def span_scores(true: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Span precision, recall and F1 (seqeval, CoNLL-evaluation mode) over IOB2 sequences."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    if not get_entities(true) and not get_entities(pred):
        return {"span_f1": 1.0, "span_precision": 1.0, "span_recall": 1.0}  # nothing to find, nothing found
    return {
        "span_f1": float(f1_score(true, pred, zero_division=0)),
        "span_precision": float(precision_score(true, pred, zero_division=0)),
        "span_recall": float(recall_score(true, pred, zero_division=0)),
    }
