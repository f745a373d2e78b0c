"""Metrics: exact span-level P/R/F1 per class, error breakdown, CLUENER string-level scoring.

Span level (the primary score): a prediction counts only if start, end and type all equal a gold
span. Per class, micro and macro averages, in the layout of the published tables
(class | precision | recall | f1-score | support). Identical to seqeval on the BIO rendering of
the same spans when spans do not overlap (tested).

CLUENER string level: per sentence and class, the set of entity strings, ignoring offsets, as
the CLUENER leaderboard scores it (macro average over classes). Published CLUENER figures mix
the two, so reports show both, named.

This module only computes; `llm_ner.report.tables` lays the results out as tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .data import Example, Span
from .errors import DataError

ERROR_KINDS = (
    "correct",
    "wrong_type",
    "wrong_boundary",
    "wrong_type_and_boundary",
    "spurious",
    "missed",
)


@dataclass(frozen=True)
class ClassScore:
    """Counts and scores of one class (or an average: counts summed, scores averaged)."""

    precision: float
    recall: float
    f1: float
    support: int  # gold items
    predicted: int
    correct: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1-score": self.f1,
            "support": self.support,
            "predicted": self.predicted,
            "correct": self.correct,
        }


def _score(correct: int, predicted: int, support: int) -> ClassScore:
    precision = correct / predicted if predicted else 0.0
    recall = correct / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClassScore(precision, recall, f1, support, predicted, correct)


@dataclass(frozen=True)
class Scores:
    """Per-class scores plus micro and macro averages."""

    per_class: dict[str, ClassScore]
    micro: ClassScore
    macro: ClassScore

    def as_dict(self) -> dict:
        return {
            "per_class": {label: s.as_dict() for label, s in self.per_class.items()},
            "micro avg": self.micro.as_dict(),
            "macro avg": self.macro.as_dict(),
        }


def scores_from_items(gold: Iterable[tuple], pred: Iterable[tuple], labels: Sequence[str] | None = None) -> Scores:
    """Score sets of hashable items whose last element is the class label.

    Classes are ``labels`` plus any label seen in gold or predictions; a class with neither
    gold nor predicted items is left out of the averages.
    """
    gold_set, pred_set = set(gold), set(pred)
    support = Counter(item[-1] for item in gold_set)
    predicted = Counter(item[-1] for item in pred_set)
    correct = Counter(item[-1] for item in gold_set & pred_set)
    classes = list(dict.fromkeys([*(labels or []), *sorted(support | predicted)]))
    per_class = {c: _score(correct[c], predicted[c], support[c]) for c in classes if support[c] or predicted[c]}
    micro = _score(sum(correct.values()), sum(predicted.values()), sum(support.values()))
    n = len(per_class)
    macro = ClassScore(
        precision=sum(s.precision for s in per_class.values()) / n if n else 0.0,
        recall=sum(s.recall for s in per_class.values()) / n if n else 0.0,
        f1=sum(s.f1 for s in per_class.values()) / n if n else 0.0,
        support=micro.support,
        predicted=micro.predicted,
        correct=micro.correct,
    )
    return Scores(per_class, micro, macro)


def span_scores(
    gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]], labels: Sequence[str] | None = None
) -> Scores:
    """Exact span-level scores; ``gold[i]`` and ``pred[i]`` are the spans of sentence i."""
    _check_lengths(gold, pred)
    return scores_from_items(
        ((i, s.start, s.end, s.label) for i, spans in enumerate(gold) for s in spans),
        ((i, s.start, s.end, s.label) for i, spans in enumerate(pred) for s in spans),
        labels,
    )


def cluener_string_scores(
    gold: Sequence[Example], pred: Sequence[Example], labels: Sequence[str] | None = None
) -> Scores:
    """CLUENER leaderboard-style scores: per sentence and class, sets of entity strings."""
    _check_lengths(gold, pred)

    def items(examples: Sequence[Example]) -> set[tuple[int, str, str]]:
        return {(i, ex.mention(s), s.label) for i, ex in enumerate(examples) for s in ex.spans}

    return scores_from_items(items(gold), items(pred), labels)


def error_breakdown(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> dict[str, dict[str, int]]:
    """Per class: what happened to each gold span, plus spurious predictions.

    A gold span is ``correct``, ``wrong_type`` (same boundaries), ``wrong_boundary`` (same type,
    overlapping), ``wrong_type_and_boundary`` (overlapping) or ``missed`` (no overlapping
    prediction), taking the best overlapping prediction in that order; counted under its gold
    class. A prediction overlapping no gold span is ``spurious``, counted under its predicted
    class.
    """
    _check_lengths(gold, pred)
    table: dict[str, Counter] = {}
    for gold_spans, pred_spans in zip(gold, pred):
        pred_spans = set(pred_spans)
        for g in set(gold_spans):
            kind, _ = judge_gold_span(g, pred_spans)
            table.setdefault(g.label, Counter())[kind] += 1
        for p in pred_spans:
            if not any(p.overlaps(g) for g in gold_spans):
                table.setdefault(p.label, Counter())["spurious"] += 1
    return {label: {kind: counts[kind] for kind in ERROR_KINDS} for label, counts in sorted(table.items())}


PREDICTION_KINDS = ("correct", "wrong_type", "wrong_boundary", "wrong_type_and_boundary", "spurious")
NONE_TYPE = "none"


def classify_sentence(gold_spans: Sequence[Span], pred_spans: Sequence[Span]) -> tuple[list[str], list[bool]]:
    """Error kind of every prediction and whether every gold span was missed, for one sentence.

    A prediction is ``correct`` (in gold), ``wrong_type`` (a gold span has its boundaries),
    ``wrong_boundary`` (overlaps a gold span of its type), ``wrong_type_and_boundary`` (overlaps
    another gold span) or ``spurious`` (overlaps none), the first that applies; a gold span is
    missed when no prediction overlaps it. Spurious and missed totals equal `error_breakdown`'s.
    """
    gold_set = set(gold_spans)
    kinds = []
    for p in pred_spans:
        overlapping = [g for g in gold_set if g.overlaps(p)]
        if p in gold_set:
            kinds.append("correct")
        elif any((g.start, g.end) == (p.start, p.end) for g in overlapping):
            kinds.append("wrong_type")
        elif any(g.label == p.label for g in overlapping):
            kinds.append("wrong_boundary")
        elif overlapping:
            kinds.append("wrong_type_and_boundary")
        else:
            kinds.append("spurious")
    missed = [not any(p.overlaps(g) for p in pred_spans) for g in gold_spans]
    return kinds, missed


def judge_gold_span(g: Span, pred_spans: set[Span]) -> tuple[str, Span | None]:
    """What became of gold span ``g``: its error kind and the prediction it is judged by, the first
    overlapping one that is exact, has its bounds, has its type, or any (None when ``missed``)."""
    overlapping = sorted(p for p in pred_spans if p.overlaps(g))
    for kind, test in (
        ("correct", lambda p: p == g),
        ("wrong_type", lambda p: (p.start, p.end) == (g.start, g.end)),
        ("wrong_boundary", lambda p: p.label == g.label),
        ("wrong_type_and_boundary", lambda p: True),
    ):
        found = next((p for p in overlapping if test(p)), None)
        if found is not None:
            return kind, found
    return "missed", None


def confusion_matrix(
    gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]], labels: Sequence[str]
) -> dict[str, list]:
    """Gold type x predicted type counts with ``none`` for missed (column) and spurious (row).

    Every gold span counts once, in the column of the prediction `error_breakdown` judges it by
    (so wrong-boundary predictions of the right type sit on the diagonal) or under ``none`` when
    no prediction overlaps it; a prediction overlapping no gold span counts in the ``none`` row.
    Row sums of the gold types are the class supports.
    """
    _check_lengths(gold, pred)
    names = list(dict.fromkeys([*labels, *sorted({s.label for spans in [*gold, *pred] for s in spans})]))
    names.append(NONE_TYPE)
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for gold_spans, pred_spans in zip(gold, pred):
        pred_set, gold_set = set(pred_spans), set(gold_spans)
        for g in gold_set:
            _, p = judge_gold_span(g, pred_set)
            matrix[index[g.label]][index[p.label if p else NONE_TYPE]] += 1
        for p in pred_set:
            if not any(p.overlaps(g) for g in gold_set):
                matrix[index[NONE_TYPE]][index[p.label]] += 1
    return {"labels": names, "matrix": matrix}


def _check_lengths(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")


# ---------------------------------------------------------------------------------------------
# Matching prediction files to gold and the full evaluation


def match_predictions(
    gold: Sequence[Example],
    pred: Sequence[Example],
    pred_path: str = "predictions",
    skipped_gold: Sequence[DataError] = (),
) -> tuple[list[Example], list[str]]:
    """Predictions in gold order, by id; a gold sentence with no prediction gets no spans.

    Raises `DataError` (naming ``pred_path``) for a predicted id not in gold, an id predicted twice
    or a text that differs from gold's; ``skipped_gold`` (bad gold records a lenient read left out)
    explains a missing id. Returns the aligned predictions and the ids of gold sentences without one.
    """
    by_id = {ex.id: ex for ex in gold}
    if len(by_id) != len(gold):
        raise ValueError("gold examples have duplicate ids")  # the readers refuse these
    predicted: dict[str, Example] = {}
    for ex in pred:
        if ex.id not in by_id:
            reason = f"prediction id {ex.id!r} is not in the gold file"
            if skipped_gold:
                reason += (
                    f" (the gold file had {len(skipped_gold)} bad records skipped by --lenient, "
                    f"first: {skipped_gold[0]}; ids of records without one are their positions)"
                )
            raise DataError(pred_path, None, reason)
        if ex.id in predicted:
            raise DataError(pred_path, None, f"prediction id {ex.id!r} appears twice")
        if ex.text and ex.text != by_id[ex.id].text:
            raise DataError(
                pred_path,
                None,
                f"prediction {ex.id!r}: text differs from gold ({ex.text[:30]!r} vs {by_id[ex.id].text[:30]!r})",
            )
        predicted[ex.id] = ex
    aligned, missing = [], []
    for ex in gold:
        if ex.id in predicted:
            aligned.append(Example(ex.id, ex.text, predicted[ex.id].spans))
        else:
            missing.append(ex.id)
            aligned.append(Example(ex.id, ex.text, []))
    return aligned, missing


def label_warnings(gold: Sequence[Example], pred: Sequence[Example]) -> list[str]:
    """Warnings about entity types: predictions typed with another label set (``PER`` against ``name``)
    score as unrelated classes, silently. Said when no predicted type is a gold type, or when types gold
    never uses make up at least half of the predicted spans (a few such spans are normal on a small slice)."""
    gold_labels = {s.label for ex in gold for s in ex.spans}
    predicted = Counter(s.label for ex in pred for s in ex.spans)
    unknown = sorted(set(predicted) - gold_labels)
    if not unknown or not gold_labels:
        return []
    if not set(predicted) & gold_labels:
        return [
            f"no predicted entity type is a gold type (gold: {', '.join(sorted(gold_labels))}; predicted: "
            f"{', '.join(sorted(predicted))}): the predictions use another label set, every entity scores as wrong"
        ]
    outside = sum(predicted[label] for label in unknown)
    if 2 * outside >= sum(predicted.values()):
        return [
            f"{outside} of {sum(predicted.values())} predicted spans have types the gold file never uses "
            f"({', '.join(unknown)}); another label set?"
        ]
    return []


def evaluate(
    gold: Sequence[Example],
    pred: Sequence[Example],
    labels: Sequence[str] | None = None,
    pred_path: str = "predictions",
    skipped_gold: Sequence[DataError] = (),
) -> dict:
    """All scores of a prediction set against gold, as a JSON-ready dict with stable keys."""
    aligned, missing = match_predictions(gold, pred, pred_path, skipped_gold)
    gold_spans = [ex.spans for ex in gold]
    pred_spans = [ex.spans for ex in aligned]
    return {
        "sentences": len(gold),
        "missing_predictions": len(missing),
        "warnings": label_warnings(gold, aligned),
        "span": span_scores(gold_spans, pred_spans, labels).as_dict(),
        "cluener_string": cluener_string_scores(gold, aligned, labels).as_dict(),
        "errors": error_breakdown(gold_spans, pred_spans),
    }
