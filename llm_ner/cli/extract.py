"""`llm-ner extract`: batched, resumable extraction with a local model or an OpenAI-compatible server."""

from __future__ import annotations

import argparse

from ..data import check_output_path
from ..errors import UsageError
from ..extraction import ExtractOptions, ModelOptions, run_extraction
from ..openai_backend import OpenAIOptions
from .common import check_model_folder, quiet_libraries

BACKENDS = ("local", "openai")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "extract",
        help="extract entities from many sentences with a (fine-tuned) model, in batches",
        description="Batched greedy generation, answers parsed into exact spans, CLUENER JSON lines out "
        "(with the raw answer and parse counters per record). Resumable: a rerun skips finished ids, and refuses "
        "(names the difference) earlier results made with other settings or from another input; --restart discards "
        "them. "
        "Data-parallel: `accelerate launch --num_processes N scripts/extract.py ...`.",
    )
    ExtractOptions.add_cli_args(parser, only=["input", "output"])
    ModelOptions.add_cli_args(parser)
    ExtractOptions.add_cli_args(
        parser, only=["input_format", "batch_size", "limit", "restart", "lenient", "quiet", "max_parse_failures"]
    )
    remote = parser.add_argument_group(
        "openai backend",
        "Send the same prompts to an OpenAI-compatible server (vLLM, SGLang, `transformers serve`) instead of "
        "loading the model here. The API key, if the server needs one, comes from the LLM_NER_API_KEY or "
        "OPENAI_API_KEY environment variable. --prompt/--format, or --adapter/--model naming the training run "
        "directory, say how to prompt; --constrained sends a JSON schema (response_format) where supported.",
    )
    remote.add_argument("--backend", choices=BACKENDS, default="local", help="(default: %(default)s)")
    OpenAIOptions.add_cli_args(remote)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.quiet:
        quiet_libraries()
    inputs = {"--input": args.input, "--model": args.model, "--adapter": args.adapter, "--prompt": args.prompt}
    check_output_path(args.output, inputs)
    if args.backend == "local":  # the openai backend's --model may name the model on the server
        check_model_folder(args.model)
    if args.backend == "local" and (args.base_url or args.served_model):
        raise UsageError("--base-url and --served-model need --backend openai")
    if args.backend == "openai" and not (args.base_url and args.served_model):
        raise UsageError("--backend openai needs --base-url and --served-model")
    openai_options = OpenAIOptions.from_cli_args(args) if args.backend == "openai" else None
    return run_extraction(ModelOptions.from_cli_args(args), ExtractOptions.from_cli_args(args), openai_options)
