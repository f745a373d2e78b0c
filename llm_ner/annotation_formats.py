"""Label Studio and doccano files: read them as gold or predictions, write predictions as pre-annotations.

Label Studio (JSON export, or one task per line): a task is
``{"data": {"text", "id"}, "annotations": [{"result": [...]}], "predictions": [{"score", "result": [...]}]}``
with ``labels`` results ``{"type": "labels", "value": {"start", "end", "text", "labels": [TYPE]}}``.
The reader takes the first annotation that is not cancelled, else the first prediction.

doccano (JSON lines): ``{"text", "label": [[start, end, "TYPE"], ...]}`` (doccano's sequence
labeling export; the newer ``entities: [{"start_offset", "end_offset", "label"}]`` is read too).

Offsets are end-exclusive character (code point) offsets in both, as inside llm-ner; every span is
checked against the text like the CLUENER reader does. Bad records raise `DataError`
(``FILE:LINE:`` for JSON lines, ``FILE:record N:`` for a JSON array) unless ``lenient``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from .data import Example, LoadReport, Span, claim_id, read_lines, write_jsonl_atomic, write_text_atomic
from .errors import DataError

ANNOTATION_FORMATS = ("labelstudio", "doccano")


def _records(path: Path) -> Iterable[tuple[int | str, object]]:
    """(where, decoded object) of a JSON array file (where = "record N") or of JSON lines (where = line)."""
    lines = list(read_lines(path))
    first = next((line for _, line in lines if line.strip()), "")
    if first.lstrip().startswith("["):
        try:
            value = json.loads("\n".join(line for _, line in lines))
        except json.JSONDecodeError as exc:
            raise DataError(path, exc.lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        for index, item in enumerate(value, 1):
            yield f"record {index}", item
        return
    for number, line in lines:
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})")


def _span(text: str, start: object, end: object, label: object, shown: object = None) -> Span:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise ValueError(f"offsets {start!r}, {end!r} are not integers")
    if not isinstance(label, str) or not label:
        raise ValueError(f"label {label!r} is not a non-empty string")
    if not 0 <= start < end <= len(text):
        raise ValueError(f"{label} [{start}, {end}) outside the text (length {len(text)}; ends are exclusive)")
    if shown is not None and shown != text[start:end]:
        raise ValueError(f"{label} [{start}, {end}): text is {text[start:end]!r}, the record says {shown!r}")
    return Span(start, end, label)


def _labelstudio_task(task: object) -> tuple[str | None, str, list[Span], dict[Span, float]]:
    if not isinstance(task, dict):
        raise ValueError(f"expected a task object, got {type(task).__name__}")
    data = task.get("data")
    if not isinstance(data, dict):
        raise ValueError('missing "data" object')
    text = data.get("text")
    if not isinstance(text, str):
        strings = [v for v in data.values() if isinstance(v, str)]
        if len(strings) != 1:
            raise ValueError('"data" has no "text" string')
        text = strings[0]
    record_id = data.get("id", task.get("id"))
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    chosen = (annotations or predictions or [{}])[0]
    results = chosen.get("result", [])
    if not isinstance(results, list):
        raise ValueError('"result" must be a list')
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
            raise ValueError(f"result {number}: expected one label in value.labels, got {labels!r}")
        try:
            span = _span(text, value.get("start"), value.get("end"), labels[0], value.get("text"))
        except ValueError as exc:
            raise ValueError(f"result {number}: {exc}") from None
        score = result.get("score")
        spans[span] = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
    scores = {s: v for s, v in spans.items() if v is not None}
    return None if record_id is None else str(record_id), text, sorted(spans), scores


def _doccano_record(obj: object) -> tuple[str | None, str, list[Span], dict[Span, float]]:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if not isinstance(text, str):
        raise ValueError('missing "text" string')
    spans = set()
    if "entities" in obj and "label" not in obj:
        entities = obj["entities"]
        if not isinstance(entities, list):
            raise ValueError('"entities" must be a list')
        for item in entities:
            if not isinstance(item, dict):
                raise ValueError(f"entity {item!r} is not an object")
            spans.add(_span(text, item.get("start_offset"), item.get("end_offset"), item.get("label")))
    else:
        labels = obj.get("label", [])
        if not isinstance(labels, list):
            raise ValueError('"label" must be a list of [start, end, "TYPE"]')
        for item in labels:
            if not isinstance(item, list) or len(item) != 3:
                raise ValueError(f"label {item!r} is not [start, end, TYPE]")
            spans.add(_span(text, *item))
    record_id = obj.get("id")
    scores_field = obj.get("scores")
    ordered = sorted(spans)
    scores = {}
    if isinstance(scores_field, list) and len(scores_field) == len(obj.get("label", [])):
        for item, score in zip(obj.get("label", []), scores_field):
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                scores[Span(item[0], item[1], item[2])] = float(score)
    return None if record_id is None else str(record_id), text, ordered, scores


def read_annotations(
    path: str | Path,
    input_format: str,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
    scores: dict[str, dict[Span, float]] | None = None,
) -> tuple[list[Example], LoadReport]:
    """Read a Label Studio or doccano file; records without an id get their 0-based index.

    ``scores``, if given, is filled with the confidences the file carries (sentence id -> span -> score).
    """
    if input_format not in ANNOTATION_FORMATS:
        raise ValueError(f"unknown annotation format {input_format!r} ({', '.join(ANNOTATION_FORMATS)})")
    path = Path(path)
    allowed = frozenset(labels) if labels is not None else None
    parse = _labelstudio_task if input_format == "labelstudio" else _doccano_record
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


def doccano_record(example: Example, scores: dict[Span, float] | None = None) -> dict:
    """A doccano JSON-lines record (``scores`` parallel to ``label`` where known)."""
    record: dict = {"id": example.id, "text": example.text, "label": [[s.start, s.end, s.label] for s in example.spans]}
    if scores and all(s in scores for s in example.spans) and example.spans:
        record["scores"] = [round(float(scores[s]), 6) for s in example.spans]
    return record


def write_annotations(
    examples: Sequence[Example],
    path: str | Path,
    output_format: str,
    scores: dict[str, dict[Span, float]] | None = None,
    gold: dict[str, Example] | None = None,
    as_annotation: bool = False,
) -> int:
    """Write Label Studio JSON (an array of tasks) or doccano JSON lines; temp file + rename."""
    scores = scores or {}
    if output_format == "doccano":
        return write_jsonl_atomic((doccano_record(ex, scores.get(ex.id)) for ex in examples), path)
    if output_format != "labelstudio":
        raise ValueError(f"unknown annotation format {output_format!r} ({', '.join(ANNOTATION_FORMATS)})")
    tasks = [
        labelstudio_task(ex, scores.get(ex.id), (gold or {}).get(ex.id), as_annotation=as_annotation) for ex in examples
    ]
    write_text_atomic("[\n" + ",\n".join(json.dumps(t, ensure_ascii=False) for t in tasks) + "\n]\n", path)
    return len(tasks)
