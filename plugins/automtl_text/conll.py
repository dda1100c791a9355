"""CoNLL files (a token and its tag per line, blank lines between sentences) as a text-tagging table."""

from __future__ import annotations

from pathlib import Path

from automtl.api import DataError, Reader, Table, object_column


def _lines(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            yield from enumerate(fh, start=1)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_conll(path: Path) -> Table:
    """One row per sentence, with list columns ``tokens`` and ``tags``."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    where: list[str] = []
    current: tuple[list[str], list[str]] | None = None
    for number, line in _lines(path):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            current = None
            continue
        if len(fields) < 2:
            raise DataError(f"{path}: line {number}: malformed line {line.rstrip(chr(10))!r}: expected a token "
                            "and its tag separated by whitespace (blank lines separate sentences)")
        if current is None:
            current = ([], [])
            tokens.append(current[0])
            tags.append(current[1])
            where.append(f"sentence {len(where) + 1} (line {number})")
        current[0].append(fields[0])
        current[1].append(fields[-1])
    return Table(str(path), {"tokens": object_column(tokens), "tags": object_column(tags)}, meta={"records": where})


class ConllReader(Reader):
    """``.conll`` files: one row per sentence, with list columns ``tokens`` and ``tags``."""

    suffixes = (".conll",)

    def read(self, path: Path) -> Table:
        return read_conll(path)
