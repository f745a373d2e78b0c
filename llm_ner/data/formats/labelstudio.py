"""Label Studio (JSON export, or one task per line): read tasks as gold or predictions, write
predictions as pre-annotations.

A task is ``{"data": {"text", "id"}, "annotations": [{"result": [...]}], "predictions": [{"score",
"result": [...]}]}`` with ``labels`` results ``{"type": "labels", "value": {"start", "end", "text",
"labels": [TYPE]}}``. The reader takes the first annotation that is not cancelled, else the first
prediction; a result's ``score`` is the entity's confidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..json_values import check_text, record_id, score_value, show
from ..outputs import write_text_atomic
from ..types import Example, LoadReport, Span
from ._annotation import checked_span, read_records
from ._base import InputFormat


def _labelstudio_task(task: object) -> tuple[str | None, str, list[Span], dict[Span, float]]:
    if not isinstance(task, dict):
        raise ValueError(f"expected a task object, got {type(task).__name__}")
    data = task.get("data")
    if not isinstance(data, dict):
        raise ValueError('missing "data" object')
    if "text" in data:
        text = check_text(data["text"], "data.text")
    else:  # a labelling config that names its text field otherwise: the one string of "data"
        strings = [v for v in data.values() if isinstance(v, str)]
        if len(strings) != 1:
            raise ValueError('"data" has no "text" string')
        text = check_text(strings[0])
    given_id = record_id(data.get("id", task.get("id")))
    annotations = [a for a in _objects(task, "annotations") if not a.get("was_cancelled")]
    predictions = _objects(task, "predictions")
    chosen = (annotations or predictions or [{}])[0]
    results = chosen.get("result", [])
    if not isinstance(results, list):
        raise ValueError(f'"result" must be a list, got {show(results)}')
    spans: dict[Span, float | None] = {}
    for number, result in enumerate(results, 1):
        if not isinstance(result, dict):
            raise ValueError(f"result {number}: expected an object")
        if result.get("type", "labels") != "labels":
            continue  # relations, choices, ...: not entity spans
        value = result.get("value")
        if not isinstance(value, dict):
            raise ValueError(f'result {number}: missing "value" object')
        labels = value.get("labels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise ValueError(f"result {number}: expected one label in value.labels, got {show(labels)}")
        try:
            span = checked_span(text, value.get("start"), value.get("end"), labels[0], value.get("text"))
        except ValueError as exc:
            raise ValueError(f"result {number}: {exc}") from None
        score = result.get("score")
        spans[span] = score_value(score)
    scores = {s: v for s, v in spans.items() if v is not None}
    return given_id, text, sorted(spans), scores


def _objects(task: dict, field: str) -> list[dict]:
    """The objects of the task's list ``field`` (absent or null: none); `ValueError` for a field that is not a list."""
    value = task.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f'"{field}" must be a list, got {type(value).__name__} {show(value)}')
    return [item for item in value if isinstance(item, dict)]


def read_labelstudio(
    path: str | Path,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
    scores: dict[str, dict[Span, float]] | None = None,
) -> tuple[list[Example], LoadReport]:
    """Read Label Studio tasks; ``scores``, if given, is filled with their results' scores (id -> span -> score)."""
    return read_records(path, _labelstudio_task, labels, lenient, allow_empty, scores)


def _ls_results(example: Example, scores: dict[Span, float] | None, prefix: str) -> list[dict]:
    results = []
    for number, span in enumerate(example.spans):
        result = {
            "id": f"{prefix}{number}",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": span.start, "end": span.end, "text": example.mention(span), "labels": [span.label]},
        }
        if scores and span in scores:
            result["score"] = round(float(scores[span]), 6)
        results.append(result)
    return results


def labelstudio_task(
    example: Example,
    scores: dict[Span, float] | None = None,
    gold: Example | None = None,
    model_version: str = "llm-ner",
    as_annotation: bool = False,
) -> dict:
    """A Label Studio task: the example's spans as a prediction (pre-annotation, with scores) or,
    with ``as_annotation``, as the annotation; ``gold`` spans become the annotation."""
    task: dict = {"data": {"text": example.text, "id": example.id}}
    if as_annotation:
        task["annotations"] = [{"result": _ls_results(example, None, "a")}]
        return task
    if gold is not None:
        task["annotations"] = [{"result": _ls_results(gold, None, "g")}]
    prediction: dict = {"model_version": model_version, "result": _ls_results(example, scores, "p")}
    if scores:
        known = [scores[s] for s in example.spans if s in scores]
        if known:
            prediction["score"] = round(float(min(known)), 6)  # the least certain entity
    task["predictions"] = [prediction]
    return task


def write_labelstudio(
    examples: Iterable[Example],
    path: str | Path,
    scores: dict[str, dict[Span, float]] | None = None,
    gold: dict[str, Example] | None = None,
    as_annotation: bool = False,
) -> int:
    """Write Label Studio JSON (an array of tasks, see `labelstudio_task`); returns the number of tasks."""
    scores = scores or {}
    tasks = [
        labelstudio_task(ex, scores.get(ex.id), (gold or {}).get(ex.id), as_annotation=as_annotation) for ex in examples
    ]
    write_text_atomic("[\n" + ",\n".join(json.dumps(t, ensure_ascii=False) for t in tasks) + "\n]\n", path)
    return len(tasks)


FORMATS = (InputFormat("labelstudio", order=50, read=read_labelstudio, write=write_labelstudio),)
