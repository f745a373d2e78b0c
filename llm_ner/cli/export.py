"""`llm-ner export`: predictions (or gold) for Label Studio / doccano, or annotations back as CLUENER."""

from __future__ import annotations

import argparse
import sys

from ..data import check_output_path, load_examples, write_cluener
from ..errors import UsageError
from .common import add_input_format, add_lenient


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="write predictions (or gold) for Label Studio / doccano, or annotations back as CLUENER",
        description="Predictions become pre-annotations to correct: Label Studio tasks with the predictions "
        "(and each entity's confidence as its score) and, with --gold, the gold spans as the annotation; or "
        "doccano JSON lines. --to cluener reads a corrected Label Studio / doccano file (--input-format) back "
        "into CLUENER JSON lines for training.",
    )
    parser.add_argument("pred", metavar="PRED", help="predictions or annotations to convert")
    parser.add_argument("--to", required=True, choices=("labelstudio", "doccano", "cluener"))
    parser.add_argument("--output", required=True, help="output file")
    parser.add_argument("--gold", help="gold file whose spans become the Label Studio annotation")
    add_input_format(parser, "--gold-format")
    add_input_format(parser, help="format of PRED")
    parser.add_argument(
        "--as-annotation",
        action="store_true",
        help="Label Studio: write PRED's spans as the (finished) annotation instead of a prediction",
    )
    add_lenient(parser, help="skip bad records instead of stopping")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..confidence import read_scores
    from ..data import write_annotations

    check_output_path(args.output, {"PRED": args.pred, "--gold": args.gold})
    examples, report = load_examples(args.pred, args.input_format, lenient=args.lenient, allow_empty=True)
    if report.skipped or report.warnings:
        report.print()
    if args.to == "cluener":
        if args.gold:
            raise UsageError("--gold goes with --to labelstudio (gold spans as annotations beside the predictions)")
        count = write_cluener(examples, args.output)
    else:
        gold = None
        if args.gold:
            if args.to != "labelstudio":
                raise UsageError("--gold needs --to labelstudio (doccano has no separate pre-annotations)")
            gold_examples, gold_report = load_examples(args.gold, args.gold_format, lenient=args.lenient)
            gold = {ex.id: ex for ex in gold_examples}
        scores = read_scores(args.pred, args.input_format)
        count = write_annotations(examples, args.output, args.to, scores, gold, as_annotation=args.as_annotation)
    print(f"wrote {count} {args.to} records to {args.output}", file=sys.stderr)
    return 0
