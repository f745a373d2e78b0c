"""Sentences without labels, the inputs of extraction and baseline prediction: plain text (one sentence
a line) and JSON lines with a ``text`` field (an ``id`` is kept; CLUENER labels are read but not needed)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...errors import DataError
from ..files import read_lines
from ..types import Example, LoadReport
from ._base import InputFormat
from .cluener import read_cluener, starts_with_json


def read_text(
    path: str | Path,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """One sentence per non-blank line (stripped), ids 0, 1, ...; ``labels`` and ``lenient`` have nothing
    to act on (every line is a sentence)."""
    path = Path(path)
    examples = []
    for _, line in read_lines(path):  # BOM dropped; U+2028 inside a sentence does not split it
        if line.strip():
            examples.append(Example(str(len(examples)), line.strip()))
    if not examples and not allow_empty:
        raise DataError(path, None, "empty file: no sentences")
    return examples, LoadReport(str(path), records=len(examples))


FORMATS = (
    InputFormat("text", order=10, read=read_text, fallback=True, labelled=False),
    InputFormat("jsonl", order=20, read=read_cluener, recognise=starts_with_json, labelled=False),
)
