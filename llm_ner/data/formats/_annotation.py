"""What the Label Studio and doccano readers share: records from a JSON array or JSON lines, spans
checked against the text, and the loop that validates records, assigns ids and collects scores.

Offsets are end-exclusive character (code point) offsets in both, as inside llm-ner; every span is
checked against the text like the CLUENER reader does. Bad records raise `DataError`
(``FILE:LINE:`` for JSON lines, ``FILE:record N:`` for a JSON array) unless ``lenient``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ...errors import DataError
from ..files import read_lines_or_errors
from ..json_values import JsonValueError, array_items, decode_json, is_offset, show
from ..types import Example, LoadReport, Span, claim_id

# One decoded record -> (id or None, text, spans, the scores the record gives some spans); ValueError if bad.
RecordParser = Callable[[object], tuple[str | None, str, list[Span], dict[Span, float]]]


def _records(path: Path) -> Iterable[tuple[int | str, object]]:
    """(where, decoded object) of a JSON array file (where = "record N") or of JSON lines (where = line).
    A record that cannot be read comes as the `ValueError` saying why; a JSON array that cannot be
    decoded raises `DataError` (no record after the fault can be found)."""
    lines = list(read_lines_or_errors(path))
    first = next((line for _, line in lines if isinstance(line, DataError) or line.strip()), "")
    if isinstance(first, str) and first.lstrip().startswith("["):
        for _, line in lines:
            if isinstance(line, DataError):
                raise line
        try:
            items = list(array_items("\n".join(str(line) for _, line in lines)))  # every line is a str here
        except JsonValueError as exc:
            raise DataError(path, exc.line, exc.reason) from None
        for index, (_, item) in enumerate(items, 1):
            yield f"record {index}", item
        return
    for number, line in lines:
        if isinstance(line, DataError):
            yield number, ValueError(line.reason)
        elif line.strip():
            try:
                yield number, decode_json(line)
            except JsonValueError as exc:
                yield number, exc


def checked_span(text: str, start: object, end: object, label: object, shown: object = None) -> Span:
    """``Span(start, end, label)`` after checking it against ``text`` (and ``shown``, the record's copy of
    the mention, when given); a `ValueError` says what is wrong."""
    if not (is_offset(start) and is_offset(end)):
        raise ValueError(f"offsets {show(start)}, {show(end)} are not integers")
    if not isinstance(label, str) or not label:
        raise ValueError(f"label {show(label)} is not a non-empty string")
    if not 0 <= start < end <= len(text):
        raise ValueError(
            f"{label} [{show(start)}, {show(end)}) outside the text (length {len(text)}; ends are exclusive)"
        )
    if shown is not None and shown != text[start:end]:
        raise ValueError(f"{label} [{start}, {end}): text is {show(text[start:end])}, the record says {show(shown)}")
    return Span(start, end, label)


def read_records(
    path: str | Path,
    parse: RecordParser,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
    scores: dict[str, dict[Span, float]] | None = None,
) -> tuple[list[Example], LoadReport]:
    """Read a file of JSON records with ``parse``; records without an id get their 0-based index.

    ``scores``, if given, is filled with the confidences the file carries (sentence id -> span -> score).
    """
    path = Path(path)
    allowed = frozenset(labels) if labels is not None else None
    report = LoadReport(str(path))
    examples: list[Example] = []
    first_seen: dict[str, str] = {}
    index = 0
    try:
        records = list(_records(path))
    except DataError as error:
        raise error from None
    for where, obj in records:
        index += 1
        try:
            if isinstance(obj, ValueError):
                raise obj
            record_id, text, spans, found = parse(obj)
            for span in spans:
                if allowed is not None and span.label not in allowed:
                    raise ValueError(f"unknown label {span.label!r} (known: {', '.join(sorted(allowed))})")
            place = where if isinstance(where, str) else f"line {where}"
            record_id = claim_id(first_seen, record_id if record_id is not None else str(index - 1), place)
        except ValueError as exc:
            report.skip(DataError(path, where, str(exc)), lenient)  # type: ignore[arg-type]  # "record N"
            continue
        example = Example(record_id, text, spans)
        report.warn_overlaps(f"{path}:{where}", example)
        if scores is not None and found:
            scores[example.id] = found
        examples.append(example)
    if index == 0 and not allow_empty:
        raise DataError(path, None, "empty file: no records")
    report.records = len(examples)
    return examples, report
