"""doccano JSON lines: ``{"text", "label": [[start, end, "TYPE"], ...]}`` (doccano's sequence labeling
export; the newer ``entities: [{"start_offset", "end_offset", "label"}]`` is read too), with an optional
``scores`` list parallel to ``label``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..json_values import check_text, record_id, score_value, show
from ..outputs import write_jsonl_atomic
from ..types import Example, LoadReport, Span
from ._annotation import checked_span, read_records
from ._base import InputFormat


def _doccano_record(obj: object) -> tuple[str | None, str, list[Span], dict[Span, float]]:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    text = check_text(obj.get("text"))
    spans = set()
    if "entities" in obj and "label" not in obj:
        entities = obj["entities"]
        if not isinstance(entities, list):
            raise ValueError('"entities" must be a list')
        for item in entities:
            if not isinstance(item, dict):
                raise ValueError(f"entity {show(item)} is not an object")
            spans.add(checked_span(text, item.get("start_offset"), item.get("end_offset"), item.get("label")))
    else:
        labels = obj.get("label", [])
        if not isinstance(labels, list):
            raise ValueError('"label" must be a list of [start, end, "TYPE"]')
        for item in labels:
            if not isinstance(item, list) or len(item) != 3:
                raise ValueError(f"label {show(item)} is not [start, end, TYPE]")
            spans.add(checked_span(text, *item))
    given_id = record_id(obj.get("id"))
    scores_field = obj.get("scores")
    ordered = sorted(spans)
    scores = {}
    if isinstance(scores_field, list) and len(scores_field) == len(obj.get("label", [])):
        for item, score in zip(obj.get("label", []), scores_field):
            value = score_value(score)
            if value is not None:
                scores[Span(item[0], item[1], item[2])] = value
    return given_id, text, ordered, scores


def read_doccano(
    path: str | Path,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
    scores: dict[str, dict[Span, float]] | None = None,
) -> tuple[list[Example], LoadReport]:
    """Read doccano JSON lines; ``scores``, if given, is filled with the records' scores (id -> span -> score)."""
    return read_records(path, _doccano_record, labels, lenient, allow_empty, scores)


def doccano_record(example: Example, scores: dict[Span, float] | None = None) -> dict:
    """A doccano JSON-lines record (``scores`` parallel to ``label`` where known)."""
    record: dict = {"id": example.id, "text": example.text, "label": [[s.start, s.end, s.label] for s in example.spans]}
    if scores and all(s in scores for s in example.spans) and example.spans:
        record["scores"] = [round(float(scores[s]), 6) for s in example.spans]
    return record


def write_doccano(
    examples: Iterable[Example], path: str | Path, scores: dict[str, dict[Span, float]] | None = None
) -> int:
    """Write doccano JSON lines (with ``scores`` where every entity of a record has one); returns the count."""
    scores = scores or {}
    return write_jsonl_atomic((doccano_record(ex, scores.get(ex.id)) for ex in examples), path)


FORMATS = (InputFormat("doccano", order=60, read=read_doccano, write=write_doccano),)
