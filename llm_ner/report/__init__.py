"""The side-by-side report: every system scored by `llm_ner.metrics` on the same gold file.

    llm-ner report --gold dev.json --pred qwen=runs/q/dev.pred.json --pred bilstm=runs/b/dev.pred.json \\
        --published eval/published_cluener.json --out runs/report

writes ``report.md`` (per-system tables, the summary of F1 per class with micro F1 last,
published figures as extra rows marked "published, not re-run", error breakdowns, paired
bootstrap confidence intervals of micro-F1 differences), ``report.json``, ``report.html`` (the
same tables, the charts and a sentence-by-sentence error browser) and the PNG charts.

The modules, each used by the next ones only:

- `inputs`: ``--pred NAME=FILE`` pairs, published figures, parse counters and scores of prediction files;
- `numbers`: `build_report` (all scores, paired bootstrap), confusion matrices, precision-recall curves;
- `tables`: the rows of every table, and the markdown tables `llm-ner evaluate` prints too;
- `charts`: the matplotlib PNGs and their file names (`chart_stems`);
- `markdown`: report.md; `html` (with ``static/``): report.html;
- `run`: `run_report`, which reads, computes and writes them all.
"""

from .html import browser_data, render_html, write_report_html
from .inputs import load_published, parse_pred_arguments
from .markdown import render_markdown
from .numbers import bootstrap_interval, build_report, paired_bootstrap, per_sentence_counts
from .run import run_report
from .tables import format_evaluation

__all__ = [
    "bootstrap_interval",
    "browser_data",
    "build_report",
    "format_evaluation",
    "load_published",
    "paired_bootstrap",
    "parse_pred_arguments",
    "per_sentence_counts",
    "render_html",
    "render_markdown",
    "run_report",
    "write_report_html",
]
