"""CLUENER JSON lines: ``{"id", "text", "label": {TYPE: {entity: [[start, end], ...]}}}`` per line.

The file format's ends are inclusive; they become end-exclusive `Span` ends here, at the file boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...errors import DataError
from ..files import input_lines, read_lines_or_errors
from ..json_values import check_text, decode_json, record_id, show
from ..outputs import write_jsonl_atomic
from ..types import Example, LoadReport, Span, claim_id
from ._base import InputFormat, looks_like_json


def _cluener_record(obj: object, labels: frozenset[str] | None) -> tuple[str | None, str, list[Span]]:
    """Validate one decoded CLUENER object; raise ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    text = check_text(obj.get("text"))
    found_id = record_id(obj.get("id"))
    label_field = obj.get("label", {})
    if label_field is None:
        label_field = {}
    if not isinstance(label_field, dict):
        raise ValueError('"label" must be an object {type: {entity: [[start, end], ...]}}')
    spans: set[Span] = set()
    for label, entities in label_field.items():
        if not label:
            raise ValueError('"label" has an empty type name')
        if labels is not None and label not in labels:
            raise ValueError(f"unknown label {label!r} (known: {', '.join(sorted(labels))})")
        if not isinstance(entities, dict):
            raise ValueError(f"label {label!r}: expected {{entity: [[start, end], ...]}}")
        for entity, offsets in entities.items():
            if not isinstance(offsets, list) or not offsets:
                raise ValueError(
                    f"{label} {show(entity)}: expected a non-empty list of [start, end], got {show(offsets)}"
                )
            for pair in offsets:
                # type() is int: not a bool, a float or a string (the hot loop of reading a corpus)
                if not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not int or type(pair[1]) is not int:
                    raise ValueError(f"{label} {show(entity)}: offsets {show(pair)} are not [start, end] integers")
                start, end_inclusive = pair
                if start > end_inclusive:
                    raise ValueError(f"{_where(label, entity, pair)}: start is after end")
                if not 0 <= start <= end_inclusive < len(text):
                    raise ValueError(
                        f"{_where(label, entity, pair)} outside the text "
                        f"(length {len(text)}; CLUENER ends are inclusive)"
                    )
                found = text[start : end_inclusive + 1]
                if found != entity:
                    raise ValueError(
                        f"{label} {show(entity)}: text[{start}:{end_inclusive + 1}] is {show(found)}, "
                        "not the entity string"
                    )
                spans.add(Span(start, end_inclusive + 1, label))
    return found_id, text, sorted(spans)


def _where(label: str, entity: str, pair: list[int]) -> str:
    return f"{label} {show(entity)}: offsets [{show(pair[0])}, {show(pair[1])}]"


def read_cluener(
    path: str | Path,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """Read a CLUENER JSON-lines file (``label`` optional, e.g. for unlabelled test files).

    Records without an ``id`` get their 0-based record index as id. ``labels`` restricts the
    allowed types; overlapping spans are kept and reported as warnings.
    """
    path = Path(path)
    allowed = frozenset(labels) if labels is not None else None
    report = LoadReport(str(path))
    examples: list[Example] = []
    first_seen: dict[str, str] = {}
    index = 0
    for number, line in read_lines_or_errors(path):
        if isinstance(line, str) and not line.strip():
            continue
        index += 1
        try:
            if isinstance(line, DataError):
                raise ValueError(line.reason)  # not UTF-8: a bad record like any other
            obj = decode_json(line)
            given_id, text, spans = _cluener_record(obj, allowed)
            example_id = claim_id(first_seen, given_id if given_id is not None else str(index - 1), f"line {number}")
        except ValueError as exc:
            reason = str(exc)
            if index == 1 and isinstance(line, str) and line.strip().startswith("["):
                reason += '; CLUENER data is JSON lines: one {"text": ..., "label": ...} object per line, not an array'
            report.skip(DataError(path, number, reason), lenient)
            continue
        example = Example(example_id, text, spans)
        report.warn_overlaps(f"{path}:{number}", example)
        examples.append(example)
    if index == 0 and not allow_empty:
        raise DataError(path, None, "empty file: no records")
    report.records = len(examples)
    return examples, report


def example_to_cluener(example: Example, with_id: bool = True) -> dict:
    """The CLUENER JSON object of an example (inclusive ends), spans grouped by type and text."""
    label: dict[str, dict[str, list[list[int]]]] = {}
    for span in example.spans:
        label.setdefault(span.label, {}).setdefault(example.mention(span), []).append([span.start, span.end - 1])
    record: dict = {"id": example.id} if with_id else {}
    record["text"] = example.text
    record["label"] = label
    return record


def write_cluener(examples: Iterable[Example], path: str | Path, with_id: bool = True) -> int:
    """Write CLUENER JSON lines; returns the number of records written."""
    return write_jsonl_atomic((example_to_cluener(example, with_id) for example in examples), path)


def starts_with_json(path: Path) -> bool:
    """True when the first non-blank line opens a JSON object or array, or the file has no such line
    (then the CLUENER reader says it is empty)."""
    for line in input_lines(path):
        if line.strip():
            return looks_like_json(line.decode("utf-8", errors="replace"))
    return True


FORMATS = (InputFormat("cluener", order=30, read=read_cluener, write=write_cluener, recognise=starts_with_json),)
