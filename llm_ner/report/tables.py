"""The tables of the scores, as rows of strings and as markdown text.

One source for the cells of report.md, report.html and `llm-ner evaluate`, so the three print
the same figures with the same rounding. Input is the JSON-ready dicts of `llm_ner.metrics`
(``evaluate``) and `build_report`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..metrics import ERROR_KINDS

SCORES_HEADER = ("class", "precision", "recall", "f1-score", "support")
BOOTSTRAP_HEADER = ("A", "B", "A - B", "95% interval", "resamples")
# The ``parse`` counters of `llm-ner extract` the report shows, in this order.
PARSE_COUNTERS = ("answers", "parse_failures", "hallucinated", "unknown_label", "duplicates", "repaired", "normalized")
PUBLISHED_MARK = "published, not re-run"
LEARNING_CURVE_NOTE = (
    "Dev span micro-F1 of the model trained on all sentences labelled by each round (`{path}`); one seed: the "
    "95% bootstrap interval over dev sentences in brackets; several seeds: their mean, then each seed's F1."
)


def scores_rows(scores: dict, digits: int = 4) -> list[list[str]]:
    """Rows (class, precision, recall, f1-score, support) of a ``Scores.as_dict()`` dict, averages last."""
    averages = [("micro avg", scores["micro avg"]), ("macro avg", scores["macro avg"])]
    return [
        [name, *[f"{s[key]:.{digits}f}" for key in ("precision", "recall", "f1-score")], str(s["support"])]
        for name, s in [*scores["per_class"].items(), *averages]
    ]


def error_rows(errors: dict[str, dict[str, int]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the error breakdown per class, a total row last."""
    header = ["class", *[k.replace("_", " ") for k in ERROR_KINDS]]
    rows = [[label, *[str(counts[k]) for k in ERROR_KINDS]] for label, counts in errors.items()]
    rows.append(["total", *[str(sum(c[k] for c in errors.values())) for k in ERROR_KINDS]])
    return header, rows


def summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary: span F1 per class and micro F1 of every system, then the
    published figures (marked as not re-run)."""
    labels = report["labels"]
    rows = []
    for name, result in report["systems"].items():
        per = result["span"]["per_class"]
        cells = [f"{per[label]['f1-score']:.4f}" if label in per else "-" for label in labels]
        rows.append([name, *cells, f"{result['span']['micro avg']['f1-score']:.4f}"])
    published = report.get("published") or {}
    for name, system in (published.get("systems") or {}).items():
        summary = system["summary_f1"]
        cells = [f"{summary[label]:.2f}" if label in summary else "-" for label in labels]
        rows.append([f"{name} ({PUBLISHED_MARK})", *cells, f"{summary['micro avg']:.2f}"])
    return ["system", *labels, "micro avg"], rows


def bootstrap_rows(report: dict) -> list[list[str]]:
    """Rows (A, B, A - B, 95% interval, resamples) of the report's paired bootstrap comparisons."""
    return [
        [b["a"], b["b"], f"{b['difference']:+.4f}", f"[{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}]", str(b["resamples"])]
        for b in report["bootstrap"]
    ]


def parsing_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the answer-parsing counters, for the systems whose predictions carry them."""
    header = ["system", *[k.replace("_", " ") for k in PARSE_COUNTERS]]
    rows = [
        [name, *[str(result["parsing"].get(k, 0)) for k in PARSE_COUNTERS]]
        for name, result in report["systems"].items()
        if result.get("parsing")
    ]
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A markdown table; ``right[i]`` right-aligns column i (default: all but the first column)."""
    right = right if right is not None else [False] + [True] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "".join("---:|" if r else "---|" for r in right)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_scores_table(scores: dict, digits: int = 4) -> str:
    """Markdown table in the seed layout from a ``Scores.as_dict()`` dict."""
    return markdown_table(SCORES_HEADER, scores_rows(scores, digits))


def format_error_table(errors: dict[str, dict[str, int]]) -> str:
    """Markdown table of the error breakdown per class."""
    return markdown_table(*error_rows(errors))


def format_evaluation(result: dict) -> str:
    """The text `llm-ner evaluate` prints."""
    parts = [
        f"Span-level exact match (start, end and type), {result['sentences']} sentences",
        format_scores_table(result["span"]),
        "",
        "CLUENER string-level (entity strings per class per sentence, offsets ignored; the leaderboard's scoring)",
        format_scores_table(result["cluener_string"]),
        "",
        "Errors per class (gold spans by outcome; spurious predictions by predicted class)",
        format_error_table(result["errors"]),
    ]
    if result["missing_predictions"]:
        parts.append(
            f"\nwarning: {result['missing_predictions']} gold sentences had no prediction "
            "(scored as predicting nothing)"
        )
    for warning in result.get("warnings", []):
        parts.append(f"\nwarning: {warning}")
    return "\n".join(parts)


def learning_curve_rows(series: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a learning curve (`learning_curve.curve_series`): per round the labelled sentences
    and each arm's dev F1 (one seed: with its 95% bootstrap interval; several: the mean, then each seed's),
    with two arms the first minus the second."""
    arms = list(series)
    by_round: dict[int, dict[str, dict]] = {}
    for arm, entries in series.items():
        for entry in entries:
            by_round.setdefault(entry["round"], {})[arm] = entry
    header = ["round", "labelled", *[f"{arm} F1" for arm in arms]]
    if len(arms) == 2:
        header.append(f"{arms[0]} - {arms[1]}")
    rows = []
    for number, entries in sorted(by_round.items()):
        counts = sorted({entry["labelled"] for entry in entries.values()})
        row = [str(number), " / ".join(str(c) for c in counts)]
        for arm in arms:
            entry = entries.get(arm)
            row.append(_curve_cell(entry) if entry else "-")
        if len(arms) == 2:
            both = [entries.get(arm) for arm in arms]
            row.append(f"{both[0]['f1'] - both[1]['f1']:+.4f}" if all(both) else "-")
        rows.append(row)
    return header, rows


def _curve_cell(entry: dict) -> str:
    points = entry["points"]
    if len(points) == 1:
        low, high = points[0].get("ci95") or (None, None)
        interval = f" [{low:.4f}, {high:.4f}]" if low is not None else ""
        seconds = points[0].get("train_seconds")
        trained = f", {_duration(seconds)} training" if seconds else ""
        return f"{entry['f1']:.4f}{interval}{trained}"
    seeds = ", ".join(f"{p['f1']:.4f}" for p in points)
    return f"{entry['f1']:.4f} (seeds: {seeds})"


def _duration(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``1.6 h``: a training time as people read it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
