"""report.md: the report's tables as markdown text."""

from __future__ import annotations

from .learning_curve import curve_series
from .tables import (
    BOOTSTRAP_HEADER,
    LEARNING_CURVE_NOTE,
    PUBLISHED_MARK,
    bootstrap_rows,
    format_error_table,
    format_scores_table,
    learning_curve_rows,
    markdown_table,
    parsing_rows,
    summary_rows,
)


def render_markdown(report: dict, chart: str | None = None, curve_chart: str | None = None) -> str:
    """The text of report.md (``chart``: the F1-per-class image to link, relative to report.md; ``curve_chart``:
    the learning-curve image, with a ``learning_curve`` in the report)."""
    parts = [
        "# Side-by-side report",
        "",
        f"{report['sentences']} sentences of `{report.get('gold', 'the gold file')}`. Scores are exact span "
        "matches (start, end and type) computed by `llm-ner evaluate` for every system on the same gold file.",
        "",
        *([report["note"], ""] if report.get("note") else []),
    ]
    if report["systems"] or report.get("published"):  # a report of a learning curve alone has no systems
        parts += ["## Summary: span-level F1 per class, micro F1 last", "", markdown_table(*summary_rows(report))]
    published = report.get("published")
    if published:
        parts += [
            "",
            f'Rows marked "{PUBLISHED_MARK}": {published.get("source", "")} '
            f"{published.get('scoring', '')} {published.get('note', '')}".rstrip(),
        ]
    if chart:
        parts += ["", f"![F1 per class]({chart})"]
    if report["bootstrap"]:
        parts += [
            "",
            "## Micro-F1 differences (paired bootstrap over sentences, 95% interval)",
            "",
            markdown_table(BOOTSTRAP_HEADER, bootstrap_rows(report), right=[False, False, True, False, True]),
        ]
    if report.get("learning_curve"):
        parts += ["", "## Learning curve", "", LEARNING_CURVE_NOTE.format(path=report["learning_curve"]["path"]), ""]
        parts.append(markdown_table(*learning_curve_rows(curve_series(report["learning_curve"]["points"]))))
        if curve_chart:
            parts += ["", f"![Learning curve]({curve_chart})"]
    header, rows = parsing_rows(report)
    if rows:
        parts += [
            "",
            "## Answer parsing (systems whose predictions carry the raw answers)",
            "",
            "Counted by `llm-ner extract` for every answer: unreadable answers (parse failures), entity strings "
            "not in the sentence (hallucinated), types outside the schema, surplus repeats, answers read only "
            "after repair, mentions found only after width/case/space folding. See the README's "
            "troubleshooting when these are high.",
            "",
            markdown_table(header, rows),
        ]
    for name, result in report["systems"].items():
        parts += [
            "",
            f"## {name}",
            "",
            "Span level:",
            "",
            format_scores_table(result["span"]),
            "",
            "CLUENER string level (the leaderboard's scoring):",
            "",
            format_scores_table(result["cluener_string"]),
            "",
            "Errors:",
            "",
            format_error_table(result["errors"]),
        ]
        if result["missing_predictions"]:
            parts.append(f"\n{result['missing_predictions']} gold sentences had no prediction (scored as empty).")
    return "\n".join(parts) + "\n"
