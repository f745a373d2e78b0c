"""`llm-ner serve`: extraction over HTTP with dynamic batching."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..extraction import ModelOptions
from ..serve import ServeLimits, ServeOptions, run_server


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve extraction over HTTP (POST /extract, GET /health, a demo page at /)",
        description='Loads the model once and answers POST /extract {"texts": [...]} with entities (character '
        "offsets, end exclusive), labels and parse counters. Requests arriving together share one batched "
        "generate (dynamic batching). Full queue -> 503 with Retry-After; too large -> 413; bad JSON -> 400. "
        "GET / is a page that highlights the entities of pasted text.",
    )
    ModelOptions.add_cli_args(parser)
    ServeOptions.add_cli_args(parser, only=["host", "port"])
    ServeLimits.add_cli_args(parser)
    ServeOptions.add_cli_args(parser, only=["log_level"])
    return parser


def run(args: argparse.Namespace) -> int:
    if args.max_chars > args.max_text_chars:
        raise UsageError("--max-chars (piece length) must not exceed --max-text-chars (longest text accepted)")
    model_options = ModelOptions.from_cli_args(args)
    return run_server(model_options, ServeOptions.from_cli_args(args), ServeLimits.from_cli_args(args))
