"""`llm-ner select`: the sentences to annotate next (least certain, or where two systems disagree)."""

from __future__ import annotations

import argparse
import sys

from ..confidence import SELECTIONS
from ..data import check_output_path, write_jsonl_atomic
from ..errors import UsageError
from ..options import non_negative_int, positive_int
from .common import add_input_format, add_lenient


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "select",
        help="pick the sentences to annotate next: least certain, where two systems disagree most, or at random",
        description="Writes the N sentences whose predictions are least certain (1 - the lowest entity or "
        "answer score written by `llm-ner extract`) or, with two --pred files, where the systems disagree "
        "most (spans only one predicts), or --by random --seed S: a seeded random sample (the control arm of "
        "an annotation loop; scores not needed). Output: CLUENER JSON lines with the first file's predictions "
        "and scores, ready for `llm-ner export --to labelstudio`.",
    )
    parser.add_argument(
        "--pred",
        required=True,
        action="append",
        help="predictions (give two for disagreement; --by random: any CLUENER file of the sentences)",
    )
    parser.add_argument("-n", type=positive_int, default=100, help="sentences to pick (default: %(default)s)")
    parser.add_argument("--by", required=True, choices=SELECTIONS)
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="--by random: the sample's seed (default: %(default)s)"
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="never pick a sentence whose id is in FILE (sentences already labelled; repeatable)",
    )
    parser.add_argument("--output", required=True, help="CLUENER JSON lines of the chosen sentences")
    add_input_format(parser, default="cluener")
    add_lenient(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..confidence import labelled_ids, select_for_annotation

    if args.by == "disagreement" and len(args.pred) != 2:
        raise UsageError("--by disagreement needs two --pred files (two systems on the same sentences)")
    if args.by == "uncertainty" and len(args.pred) != 1:
        raise UsageError("--by uncertainty takes one --pred file (with scores from `llm-ner extract`)")
    if args.by == "random" and len(args.pred) != 1:
        raise UsageError("--by random takes one --pred file (the sentences to sample from)")
    inputs = {f"--{kind} {path}": path for kind in ("pred", "exclude") for path in getattr(args, kind)}
    check_output_path(args.output, inputs)
    exclude = labelled_ids(args.exclude)
    records = select_for_annotation(
        args.pred, args.n, args.by, args.input_format, args.lenient, seed=args.seed, exclude=exclude
    )
    if len(records) < args.n:
        print(f"warning: only {len(records)} sentences left to pick from (-n {args.n})", file=sys.stderr)
    count = write_jsonl_atomic(records, args.output)
    print(f"wrote {count} sentences to annotate next ({args.by}) to {args.output}", file=sys.stderr)
    return 0
