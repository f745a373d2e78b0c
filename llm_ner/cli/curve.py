"""`llm-ner curve`: add a point to an annotation loop's learning curve (dev F1 against labelled sentences)."""

from __future__ import annotations

import argparse
import json
import sys

from ..data import check_output_path, load_examples
from ..options import non_negative_float, non_negative_int, positive_int
from .common import add_input_format


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "curve",
        help="add a learning-curve point: dev F1 of a model against the sentences it was trained on",
        description="Scores --pred against --gold (span micro-F1 with a 95% bootstrap interval over the gold "
        "sentences) and writes it into the learning-curve file --output as the point of (--arm, --round, "
        "--seed), with the number of sentences, characters and entities in --labelled. A point already there "
        "for the same arm, round and seed is replaced, so a rerun loop never doubles one. `llm-ner report "
        "--learning-curve FILE` draws the curve; scripts/annotation_loop.sh writes one.",
    )
    parser.add_argument("--gold", required=True, help="gold file (the dev set)")
    parser.add_argument("--pred", required=True, help="the model's predictions on --gold (CLUENER JSON lines)")
    parser.add_argument("--labelled", required=True, help="the labelled sentences the model was trained on")
    parser.add_argument("--arm", required=True, help="the selection arm, e.g. uncertainty or random")
    parser.add_argument("--round", required=True, type=non_negative_int, help="the loop round (0: the seed set)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="the loop's seed (default: %(default)s)")
    parser.add_argument(
        "--train-seconds",
        type=non_negative_float,
        help="how long the model trained, shown beside its F1 in the report's learning-curve table",
    )
    parser.add_argument(
        "--resamples", type=positive_int, default=1000, help="bootstrap resamples (default: %(default)s)"
    )
    parser.add_argument("--output", required=True, help="learning-curve JSON lines file (created or updated)")
    add_input_format(parser, "--gold-format")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..report.learning_curve import add_curve_point, curve_point

    check_output_path(args.output, {"--gold": args.gold, "--pred": args.pred, "--labelled": args.labelled})
    gold, _ = load_examples(args.gold, args.gold_format)
    pred, _ = load_examples(args.pred, "cluener", allow_empty=True)
    labelled, _ = load_examples(args.labelled, allow_empty=True)
    point = curve_point(
        gold, pred, labelled, args.arm, args.round, args.seed, args.resamples, args.pred, args.train_seconds
    )
    add_curve_point(args.output, point)
    print(json.dumps(point, ensure_ascii=False))
    print(f"wrote the point of {args.arm} round {args.round} into {args.output}", file=sys.stderr)
    return 0
