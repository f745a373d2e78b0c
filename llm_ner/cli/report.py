"""`llm-ner report`: several systems side by side (markdown, HTML, JSON, charts)."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from ..options import non_negative_int, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="side-by-side report of several systems (markdown, HTML sentence browser, JSON, PNG charts)",
        description="Scores every prediction file against the same gold file with `llm-ner evaluate`'s metrics "
        "and writes report.md, report.html (with a sentence browser), report.json and PNG charts: per-system tables, "
        "the F1 summary with "
        "published figures marked as such, error breakdowns and paired bootstrap intervals.",
    )
    parser.add_argument("--gold", required=True)
    parser.add_argument(
        "--pred",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a system's CLUENER predictions (repeat for each system; required unless --learning-curve)",
    )
    parser.add_argument("--published", help="published figures to add as rows, e.g. eval/published_cluener.json")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--resamples", type=positive_int, default=1000, help="bootstrap resamples (default: %(default)s)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--note", help="a paragraph for the top of report.md (how the systems were trained)")
    parser.add_argument(
        "--learning-curve",
        metavar="FILE",
        help="learning-curve points written by `llm-ner curve` (scripts/annotation_loop.sh): adds their table "
        "and learning_curve.png (dev F1 against labelled sentences, one line per selection arm)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from ..report import run_report

    if not args.pred and not args.learning_curve:
        raise UsageError("--pred is required (a report of a learning curve alone: --learning-curve FILE)")
    out = run_report(
        args.gold, args.pred, args.out, args.published, args.resamples, args.seed, args.note, args.learning_curve
    )
    print(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'report.json'} and the charts", file=sys.stderr)
    return 0
