"""`llm-ner quickstart`: the whole pipeline on the embedded default (or a real model), resumable."""

from __future__ import annotations

import argparse

from ..quickstart import QuickstartOptions


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "quickstart",
        help="the whole pipeline: data, convert, a tiny model (or --model), train, extract, baseline, report",
        description="Finds CLUENER (or the shipped sample), converts it to chat instructions, builds a tiny random "
        "Qwen3 (or takes --model with LoRA and the config made for it), fine-tunes it, extracts dev with constrained "
        "decoding, trains the BiLSTM-CRF baseline and writes the side-by-side report. Rerunning continues where it "
        "stopped. Arguments after -- go to train_sft.py (e.g. -- --max_steps 50).",
    )
    QuickstartOptions.add_cli_args(parser)
    parser.add_argument("train_args", nargs="*", metavar="-- TRAIN_ARGS", help="passed on to train_sft.py")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..quickstart import run_quickstart

    return run_quickstart(QuickstartOptions.from_cli_args(args, train_args=args.train_args))
