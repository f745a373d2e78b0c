"""Learning curves of an annotation loop: dev F1 against the number of labelled sentences, one line per
selection arm (uncertainty, random, ...), written by `llm-ner curve` and drawn by `llm-ner report
--learning-curve`.

The file is JSON lines, one point per (arm, round, seed)::

    {"arm": "uncertainty", "round": 1, "seed": 0, "labelled": 400, "labelled_chars": 19322,
     "labelled_entities": 1391, "f1": 0.4123, "ci95": [0.3981, 0.4262], "precision": ..., "recall": ...,
     "dev_sentences": 1343, "resamples": 1000}

and, where `llm-ner curve --train-seconds` gave it, ``"train_seconds"``: how long that model trained.
``ci95`` is the bootstrap interval over dev sentences (`numbers.bootstrap_interval`). Adding a point
that is already there (same arm, round and seed) replaces it, so a rerun of a loop never doubles one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ..data import Example, check_output_path, load_examples, read_lines_or_errors, write_jsonl_atomic
from ..errors import DataError
from ..metrics import match_predictions
from .numbers import bootstrap_interval, per_sentence_counts
from .options import CurveOptions

log = logging.getLogger(__name__)

POINT_KEY = ("arm", "round", "seed")
# Fields a point must carry to be drawn, with their types.
_REQUIRED = {"arm": str, "round": int, "labelled": int, "f1": (int, float)}


def curve_point(
    gold: Sequence[Example], pred: Sequence[Example], labelled: Sequence[Example], options: CurveOptions
) -> dict:
    """One point: the span micro-F1 of ``pred`` on ``gold`` with its bootstrap interval (``options.resamples``,
    ``options.seed``), against the sentences (and their characters and entities) the model was trained on; with
    ``options.train_seconds``, the time its training took."""
    aligned, missing = match_predictions(gold, pred, options.pred)
    if missing:  # a point scored on part of the dev set would not be comparable with the others
        raise DataError(
            options.pred,
            None,
            f"{len(missing)} of the {len(gold)} sentences of --gold {options.gold} have no prediction (first: id "
            f"{missing[0]!r}); a learning-curve point scores every dev sentence: predict all of --gold",
        )
    counts = per_sentence_counts(gold, aligned)
    interval = bootstrap_interval(counts, options.resamples, options.seed)
    correct, predicted, total = (int(c) for c in counts.sum(0))
    point = {
        "arm": options.arm,
        "round": options.round,
        "seed": options.seed,
        "labelled": len(labelled),
        "labelled_chars": sum(len(ex.text) for ex in labelled),
        "labelled_entities": sum(len(ex.spans) for ex in labelled),
        "f1": round(interval["f1"], 6),
        "ci95": [round(v, 6) for v in interval["ci95"]],
        "precision": round(correct / predicted, 6) if predicted else 0.0,
        "recall": round(correct / total, 6) if total else 0.0,
        "dev_sentences": len(gold),
        "resamples": options.resamples,
    }
    if options.train_seconds is not None:
        point["train_seconds"] = round(options.train_seconds, 1)
    return point


def read_learning_curve(path: str | Path) -> list[dict]:
    """The points of a learning-curve file (`DataError` with FILE:LINE for a bad one); a missing file has none."""
    path = Path(path)
    if not path.exists():
        return []
    points = []
    for number, line in read_lines_or_errors(path):
        if isinstance(line, DataError):
            raise line
        if not line.strip():
            continue
        try:
            point = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, number, f"invalid JSON ({exc.msg})") from None
        if not isinstance(point, dict):
            raise DataError(path, number, "expected a JSON object (a learning-curve point)")
        for field, kind in _REQUIRED.items():
            if not isinstance(point.get(field), kind) or isinstance(point.get(field), bool):
                raise DataError(path, number, f"{field!r} missing or not a {getattr(kind, '__name__', 'number')}")
        points.append(point)
    return points


def add_curve_point(path: str | Path, point: dict) -> list[dict]:
    """Write ``point`` into the learning-curve file (replacing one with the same arm, round and seed),
    via a temporary file and a rename; returns all points."""
    key = tuple(point.get(k) for k in POINT_KEY)
    points = [p for p in read_learning_curve(path) if tuple(p.get(k) for k in POINT_KEY) != key]
    points.append(point)
    arms = list(dict.fromkeys(p["arm"] for p in points))  # in the order they were first added
    points.sort(key=lambda p: (arms.index(p["arm"]), p.get("seed", 0), p["round"]))
    write_jsonl_atomic(points, path)
    return points


def curve_series(points: Sequence[dict]) -> dict[str, list[dict]]:
    """Per arm (in order of first appearance), one entry per round: the labelled count, the mean F1 over
    the seeds and every seed's point. What the chart and the table show."""
    arms: dict[str, dict[int, list[dict]]] = {}
    for point in points:
        arms.setdefault(point["arm"], {}).setdefault(point["round"], []).append(point)
    series = {}
    for arm, rounds in arms.items():
        series[arm] = [
            {
                "round": number,
                "labelled": round(sum(p["labelled"] for p in seeds) / len(seeds)),
                "f1": sum(p["f1"] for p in seeds) / len(seeds),
                "points": sorted(seeds, key=lambda p: p.get("seed", 0)),
            }
            for number, seeds in sorted(rounds.items())
        ]
    return series


def add_point(options: CurveOptions) -> dict:
    """`llm-ner curve`: score ``options.pred`` on ``options.gold`` and write the point into ``options.output``."""
    check_output_path(options.output, {"--gold": options.gold, "--pred": options.pred, "--labelled": options.labelled})
    gold, _ = load_examples(options.gold, options.gold_format)
    pred, _ = load_examples(options.pred, "cluener")
    labelled, _ = load_examples(options.labelled)
    point = curve_point(gold, pred, labelled, options)
    add_curve_point(options.output, point)
    log.info(f"wrote the point of {options.arm} round {options.round} into {options.output}")
    return point
