"""`llm-ner select`: the sentences to annotate next (least certain, or where two systems disagree)."""

from __future__ import annotations

import argparse
import sys

from ..data import check_output_path, write_jsonl_atomic
from ..errors import UsageError
from ..options import positive_int
from .common import add_input_format, add_lenient


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "select",
        help="pick the sentences to annotate next: least certain, or where two systems disagree most",
        description="Writes the N sentences whose predictions are least certain (1 - the lowest entity or "
        "answer score written by `llm-ner extract`) or, with two --pred files, where the systems disagree "
        "most (spans only one predicts). Output: CLUENER JSON lines with the first file's predictions and "
        "scores, ready for `llm-ner export --to labelstudio`.",
    )
    parser.add_argument("--pred", required=True, action="append", help="predictions (give two for disagreement)")
    parser.add_argument("-n", type=positive_int, default=100, help="sentences to pick (default: %(default)s)")
    parser.add_argument("--by", required=True, choices=("uncertainty", "disagreement"))
    parser.add_argument("--output", required=True, help="CLUENER JSON lines of the chosen sentences")
    add_input_format(parser, default="cluener")
    add_lenient(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..confidence import select_for_annotation

    if args.by == "disagreement" and len(args.pred) != 2:
        raise UsageError("--by disagreement needs two --pred files (two systems on the same sentences)")
    if args.by == "uncertainty" and len(args.pred) != 1:
        raise UsageError("--by uncertainty takes one --pred file (with scores from `llm-ner extract`)")
    check_output_path(args.output, {f"--pred {path}": path for path in args.pred})
    records = select_for_annotation(args.pred, args.n, args.by, args.input_format, args.lenient)
    count = write_jsonl_atomic(records, args.output)
    print(f"wrote {count} sentences to annotate next ({args.by}) to {args.output}", file=sys.stderr)
    return 0
