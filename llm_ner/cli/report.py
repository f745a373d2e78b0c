"""`llm-ner report`: several systems side by side (markdown, HTML, JSON, charts)."""

from __future__ import annotations

from ..report.options import ReportOptions
from .command import Command

COMMAND = Command(
    "report",
    help="side-by-side report of several systems (markdown, HTML sentence browser, JSON, PNG charts)",
    description="Scores every prediction file against the same gold file with `llm-ner evaluate`'s metrics "
    "and writes report.md, report.html (with a sentence browser), report.json and PNG charts: per-system tables, "
    "the F1 summary with "
    "published figures marked as such, error breakdowns and paired bootstrap intervals.",
    options=ReportOptions,
    call="llm_ner.report:run_report",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
