"""The one definition of how text becomes tokens, for training data and for serving.

Tokens are runs of non-space characters, with every ASCII punctuation mark
split off as a token of its own: ``"Fly to Boston, 3pm!"`` becomes
``fly to boston , 3pm !``. Lower-casing (ASCII letters only) is the
standardisation step; it never moves a token boundary.

The same three rules run in two places, written once here:

- :func:`tokenize` in Python, to line tags up with model positions and to
  count the training vocabulary before TensorFlow starts;
- :func:`tf_standardize` plus ``tf.strings.split`` inside the model's
  ``TextVectorization`` layer, so the exported SavedModel splits raw strings
  the same way. ``tests/test_text.py`` checks that both agree.

Both regular expressions below are valid, and mean the same, in Python's
``re`` and in RE2 (TensorFlow); whitespace is the ASCII set that
``tf.strings.split`` uses, not Python's wider Unicode one.
"""

from __future__ import annotations

import re
import string
from typing import Any

#: The version of these rules: a change that moves a token boundary bumps it (exports record it).
VERSION = 1
#: ASCII punctuation (``string.punctuation``) as one character class.
PUNCTUATION = r"[!-/:-@\[-`{-~]"
#: The whitespace ``tf.strings.split`` splits on (``absl::ascii_isspace``).
WHITESPACE = r"[ \t\n\v\f\r]+"

_PUNCT = re.compile(f"({PUNCTUATION})")
_SPACE = re.compile(WHITESPACE)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

def standardize(text: str, lowercase: bool = True) -> str:
    """Separate punctuation with spaces and (optionally) lower-case ASCII letters."""
    if lowercase:
        text = text.translate(_ASCII_LOWER)
    return _PUNCT.sub(r" \1 ", text)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The tokens of ``text``, exactly as the exported model sees them."""
    return [t for t in _SPACE.split(standardize(text, lowercase)) if t]


def ngrams(tokens: list[str], widths: tuple[int, ...] = (1, 2)) -> list[str]:
    """Every run of ``widths`` consecutive tokens, joined by one space, shorter runs first: the
    terms ``TextVectorization(ngrams=...)`` counts (``tf.strings.ngrams``, separator ``" "``)."""
    return [" ".join(tokens[i: i + n]) for n in widths for i in range(len(tokens) - n + 1)]


def tf_standardize(texts: Any, lowercase: bool = True) -> Any:
    """:func:`standardize` with TensorFlow string ops (ASCII lower-casing, RE2 regex)."""
    import tensorflow as tf

    if lowercase:
        texts = tf.strings.lower(texts)  # no encoding given: ASCII letters only, as above
    return tf.strings.regex_replace(texts, f"({PUNCTUATION})", r" \1 ")


def tf_tokenize(texts: Any, lowercase: bool = True) -> Any:
    """:func:`tokenize` in TensorFlow (a ragged tensor of tokens), as the model runs it."""
    import tensorflow as tf

    return tf.strings.split(tf_standardize(texts, lowercase))


def describe(lowercase: bool) -> dict[str, Any]:
    """The tokenisation, spelled out for the manifest so users can line outputs up with words."""
    return {
        "version": VERSION,
        "lowercase": "ascii" if lowercase else False,
        "punctuation_split": PUNCTUATION,
        "whitespace": WHITESPACE,
    }
