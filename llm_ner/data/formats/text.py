"""Sentences without labels, the inputs of extraction and baseline prediction: plain text (one sentence
a line) and JSON lines with a ``text`` field (an ``id`` is kept; CLUENER labels are read but not needed)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...errors import DataError
from ..files import read_lines_or_errors
from ..types import Example, LoadReport
from ._base import InputFormat
from .cluener import read_cluener, starts_with_json


def read_text(
    path: str | Path,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """One sentence per non-blank line (stripped), ids 0, 1, ... (``labels`` has nothing to act on). A line
    that is not UTF-8 is a `DataError`, or with ``lenient`` a skipped sentence that keeps its id."""
    path = Path(path)
    report = LoadReport(str(path))
    examples = []
    index = 0
    for _, line in read_lines_or_errors(path):  # BOM dropped; U+2028 inside a sentence does not split it
        if isinstance(line, DataError):
            report.skip(line, lenient)
            index += 1
        elif line.strip():
            examples.append(Example(str(index), line.strip()))
            index += 1
    if index == 0 and not allow_empty:
        raise DataError(path, None, "empty file: no sentences")
    report.records = len(examples)
    return examples, report


FORMATS = (
    InputFormat("text", order=10, read=read_text, fallback=True, labelled=False),
    InputFormat("jsonl", order=20, read=read_cluener, recognise=starts_with_json, labelled=False),
)
