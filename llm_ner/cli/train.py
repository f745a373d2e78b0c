"""`llm-ner train`: train_sft.py in this process; TRL's parser reads every argument."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    # No prefix characters (NUL is none of them): argparse sees no option, so every argument after
    # `train`, --help included, lands in train_args for TrlParser.
    parser = subparsers.add_parser(
        "train",
        help="fine-tune with TRL (same arguments as train_sft.py; --config YAML plus overrides)",
        description="Runs train_sft.py in this process: `llm-ner train --config configs/tiny-cpu.yaml "
        "--max_steps 20`. For several GPUs use `accelerate launch train_sft.py ...`. "
        "`llm-ner train --help` lists every option.",
        add_help=False,
        prefix_chars="\0",
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..training import main as train_main

    train_main(args.train_args)
    return 0
