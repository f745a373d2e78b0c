"""`llm-ner merge`: a LoRA adapter merged into its base model."""

from __future__ import annotations

import argparse
import sys

from ..data import check_output_path
from ..run_dir import adapter_base_model


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "merge",
        help="merge a LoRA adapter into its base model",
        description="Loads the adapter's base model unquantized, merges the LoRA weights and saves a "
        "plain model directory with the tokenizer (Qwen3 thinking off by default) and run metadata.",
    )
    parser.add_argument("--adapter", required=True, help="adapter directory (training output)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    return parser


def run(args: argparse.Namespace) -> int:
    from ..training import merge_adapter

    base = adapter_base_model(args.adapter)  # not an adapter: one line before anything loads
    check_output_path(args.out, {"--adapter": args.adapter, "base model": base}, "--out", writes_folder=True)
    out = merge_adapter(args.adapter, args.out, args.dtype)
    print(f"merged {args.adapter} into {out}", file=sys.stderr)
    return 0
