"""What the report reads besides the examples: ``--pred NAME=FILE`` pairs, the published figures, and
the parse counters and entity confidences `llm-ner extract` writes into a prediction file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..confidence import read_scores
from ..data import Span, read_lines_or_errors
from ..data.files import read_input_bytes
from ..errors import DataError, UsageError


def parse_pred_arguments(values: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=FILE`` pairs, names unique."""
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--pred expects NAME=FILE, got {value!r}")
        if name in {n for n, _ in pairs}:
            raise UsageError(f"--pred name {name!r} given twice")
        pairs.append((name, path))
    return pairs


def parse_counters(path: str | Path) -> dict[str, int] | None:
    """The sum of the ``parse`` counters `llm-ner extract` writes per record (None if there are none)."""
    totals: dict[str, int] = {}
    for _, line in read_lines_or_errors(Path(path)):
        try:
            counts = json.loads(line).get("parse")
        except (TypeError, json.JSONDecodeError, AttributeError):
            continue  # load_examples has validated the file (a line that is not UTF-8 comes as TypeError)
        if isinstance(counts, dict):
            for key, value in counts.items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
    return totals or None


def parse_failure_line(counts: dict[str, int] | None) -> str | None:
    """The line `llm-ner extract`, `evaluate` and `report` print about unreadable answers (None when
    every answer was read), from `parse_counters`."""
    if not counts or not counts.get("parse_failures"):
        return None
    return (
        f"{counts['parse_failures']} of {counts.get('answers', 0)} answers could not be parsed: no entities were "
        "read from them (the answers are in the records' raw field)"
    )


def read_system_scores(predictions: dict[str, str]) -> dict[str, dict[str, dict[Span, float]]]:
    """Per system the entity confidences its prediction file carries (`llm-ner extract`), if any."""
    return {name: read_scores(path) for name, path in predictions.items()}


def load_published(path: str | Path) -> dict:
    """Published figures (see eval/published_cluener.json), checked: `DataError` naming the file otherwise."""
    try:
        published = json.loads(read_input_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not valid UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(published, dict) or not isinstance(published.get("systems"), dict):
        raise DataError(path, None, 'expected a JSON object with "systems": {name: {"summary_f1": {...}}}')
    for name, system in published["systems"].items():
        summary = system.get("summary_f1") if isinstance(system, dict) else None
        if not isinstance(summary, dict):
            raise DataError(path, None, f'system {name!r}: no "summary_f1" object {{class: F1, "micro avg": F1}}')
        if "micro avg" not in summary:
            raise DataError(path, None, f'system {name!r}: "summary_f1" has no "micro avg"')
        for key, value in summary.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DataError(path, None, f"system {name!r}: summary_f1[{key!r}] is {value!r}, not a number")
    return published
