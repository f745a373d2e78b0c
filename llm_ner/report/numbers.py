"""The numbers of the report beyond `llm_ner.metrics.evaluate`: paired bootstrap intervals of micro-F1
differences, confusion matrices and precision-recall curves, gathered into one JSON-ready dict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..confidence import held_out_threshold, pr_curve
from ..data import Example, Span
from ..metrics import confusion_matrix, evaluate, match_predictions
from .options import MAX_RESAMPLES


def per_sentence_counts(gold: Sequence[Example], pred: Sequence[Example]) -> np.ndarray:
    """(sentences, 3): correct, predicted, gold spans of every sentence (``pred`` aligned to ``gold``)."""
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        gold_set, pred_set = set(g.spans), set(p.spans)
        counts[i] = (len(gold_set & pred_set), len(pred_set), len(gold_set))
    return counts


def _micro_f1(counts: np.ndarray) -> np.ndarray:
    correct, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = predicted + gold
    return np.where(denominator > 0, 2 * correct / np.maximum(denominator, 1), 0.0)


# Resampled sentence indices drawn at once: memory stays ~(8 + 24) MB per million whatever --resamples is.
_INDEX_CELLS = 1_000_000


def _resampled_totals(counts: Sequence[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """(resamples, 3) summed counts of each array in ``counts`` over the same ``resamples`` resamples of the
    sentences (paired), drawn in chunks; the same numbers as drawing every resample at once."""
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples must be from 1 to {MAX_RESAMPLES}, got {resamples}")
    rng = np.random.default_rng(seed)
    sentences = len(counts[0])
    step = max(1, _INDEX_CELLS // max(sentences, 1))
    totals = [np.empty((resamples, 3), dtype=np.int64) for _ in counts]
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        index = rng.integers(0, sentences, size=(size, sentences))
        for total, array in zip(totals, counts):
            total[start : start + size] = array[index].sum(1)
    return totals


def paired_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Micro-F1 of A minus B with a 95% interval from resampling sentences (paired)."""
    totals_a, totals_b = _resampled_totals([counts_a, counts_b], resamples, seed)
    diffs = _micro_f1(totals_a) - _micro_f1(totals_b)
    observed = float(_micro_f1(counts_a.sum(0)) - _micro_f1(counts_b.sum(0)))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "difference": observed,
        "ci95": [float(low), float(high)],
        "resamples": resamples,
        "p_b_better_or_equal": float((diffs <= 0).mean()),
    }


def bootstrap_interval(counts: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """One system's micro-F1 with a 95% interval from resampling sentences (``per_sentence_counts``)."""
    (totals,) = _resampled_totals([counts], resamples, seed)
    low, high = np.percentile(_micro_f1(totals), [2.5, 97.5])
    return {"f1": float(_micro_f1(counts.sum(0))), "ci95": [float(low), float(high)], "resamples": resamples}


def build_report(
    gold: Sequence[Example],
    systems: dict[str, Sequence[Example]],
    published: dict | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """All scores of every system and the bootstrap comparisons of every pair, as a JSON-ready dict."""
    labels = sorted({s.label for ex in gold for s in ex.spans})
    result = {"sentences": len(gold), "labels": labels, "systems": {}, "bootstrap": [], "published": None}
    counts = {}
    for name, predictions in systems.items():
        aligned, _ = match_predictions(gold, predictions)
        result["systems"][name] = evaluate(gold, predictions, labels)
        counts[name] = per_sentence_counts(gold, aligned)
    names = list(systems)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            result["bootstrap"].append({"a": a, "b": b, **paired_bootstrap(counts[a], counts[b], resamples, seed)})
    if published:
        result["published"] = published
    return result


def add_confusion_matrices(report: dict, gold: Sequence[Example], aligned: dict[str, Sequence[Example]]) -> None:
    """Put each system's gold type x predicted type counts into ``report["systems"][name]["confusion"]``.

    ``aligned[name]`` are the system's predictions in gold order (`metrics.match_predictions`).
    """
    for name, predictions in aligned.items():
        report["systems"][name]["confusion"] = confusion_matrix(
            [ex.spans for ex in gold], [ex.spans for ex in predictions], report["labels"]
        )


def add_pr_curves(
    report: dict,
    gold: Sequence[Example],
    aligned: dict[str, Sequence[Example]],
    scores: dict[str, dict[str, dict[Span, float]]],
) -> dict[str, dict]:
    """Put the precision-recall summary of every system with scores into ``report["systems"][name]["pr_curve"]``.

    ``scores[name]`` maps sentence id -> {span: score}. Returns the full curves (with their points,
    which the report.json leaves out) by system, for the charts. ``held_out``: the suggested threshold
    chosen on the first half of the sentences and tried on the second (`held_out_threshold`).
    """
    curves = {}
    for name, by_id in scores.items():
        if by_id:
            curves[name] = pr_curve(gold, aligned[name], by_id)
            summary = {k: v for k, v in curves[name].items() if k != "points"}
            summary["held_out"] = held_out_threshold(gold, aligned[name], by_id)
            report["systems"][name]["pr_curve"] = summary
    return curves
