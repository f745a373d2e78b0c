"""`llm-ner evaluate`: predictions against gold, span-level and CLUENER string-level."""

from __future__ import annotations

import argparse
import json
import sys

from ..data import check_output_path, load_examples, write_text_atomic
from ..errors import DataError, UsageError
from ..options import positive_float
from .common import add_input_format, add_lenient


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predictions against gold: span-level and CLUENER string-level tables",
        description="Exact span-level precision/recall/F1 per class (micro, macro), the CLUENER "
        "leaderboard's string-level scores and an error breakdown. Predictions are CLUENER "
        "JSON lines matched to gold by id (records without id: by position).",
    )
    parser.add_argument("--gold", required=True, help="gold file (CLUENER or BIO)")
    parser.add_argument("--pred", required=True, help="predictions (CLUENER JSON lines)")
    add_input_format(parser, "--gold-format")
    add_input_format(parser, "--pred-format", default="cluener", help="predictions format (default: %(default)s)")
    parser.add_argument(
        "--min-score",
        type=positive_float,
        metavar="X",
        help="score only predicted entities whose confidence (written by `llm-ner extract`) is at least X (0-1]",
    )
    parser.add_argument("--json", metavar="OUT", help="also write all scores as JSON")
    add_lenient(parser, help="skip bad records instead of stopping")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..metrics import evaluate
    from ..report import format_evaluation
    from ..report.inputs import parse_counters, parse_failure_line

    if args.json:
        check_output_path(args.json, {"--gold": args.gold, "--pred": args.pred}, "--json")
    gold, gold_report = load_examples(args.gold, args.gold_format, lenient=args.lenient)
    pred, pred_report = load_examples(args.pred, args.pred_format, lenient=args.lenient, allow_empty=True)
    if args.min_score is not None:
        pred = _filter_min_score(args.pred, args.pred_format, pred, args.min_score)
    for report in (gold_report, pred_report):
        if report.skipped or report.warnings:
            report.print()
    labels = sorted({s.label for ex in gold for s in ex.spans})
    result = evaluate(gold, pred, labels, pred_path=args.pred, skipped_gold=gold_report.skipped)
    result = {"gold": str(args.gold), "pred": str(args.pred), **result}
    parsing = parse_counters(args.pred)  # written by `llm-ner extract`: say how many answers were unreadable
    if parsing:
        result["parsing"] = parsing
    unparsed = parse_failure_line(parsing)
    if unparsed:
        result["warnings"] = [*result.get("warnings", []), unparsed]
    print(format_evaluation(result))
    if args.json:
        write_text_atomic(json.dumps(result, ensure_ascii=False, indent=2) + "\n", args.json)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def _filter_min_score(path: str, input_format: str, pred: list, min_score: float) -> list:
    """`evaluate --min-score`: drop predicted entities scoring below the threshold."""
    from ..confidence import filter_by_score, read_scores

    if min_score > 1:
        raise UsageError(f"--min-score is a probability: between 0 and 1, got {min_score}")
    scores = read_scores(path, input_format)
    if not scores:
        raise DataError(path, None, "carries no entity scores for --min-score (write them with `llm-ner extract`)")
    kept, dropped = filter_by_score(pred, scores, min_score)
    total = sum(len(ex.spans) for ex in pred)
    print(f"--min-score {min_score}: kept {total - dropped} of {total} predicted entities", file=sys.stderr)
    return kept
