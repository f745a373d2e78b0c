"""`llm-ner extract`: batched, resumable extraction with a local model or an OpenAI-compatible server."""

from __future__ import annotations

import argparse

from ..backends.openai import OpenAIOptions
from ..extraction.options import ExtractOptions, ExtractRequest, ModelOptions, RayOptions


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "extract",
        help="extract entities from many sentences with a (fine-tuned) model, in batches",
        description="Batched greedy generation, answers parsed into exact spans, CLUENER JSON lines out "
        "(with the raw answer and parse counters per record). Resumable: a rerun skips finished ids, and refuses "
        "(names the difference) earlier results made with other settings or from another input; --restart discards "
        "them. "
        "Data-parallel: `accelerate launch --num_processes N scripts/extract.py ...` on one machine, or "
        "--engine ray on a Ray cluster.",
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
    ExtractOptions.add_cli_args(remote, only=["backend"])
    OpenAIOptions.add_cli_args(remote)
    cluster = parser.add_argument_group(
        "ray engine",
        "--engine ray: the same records, in the same order, from a pool of Ray actors (pip install 'llm-ner[ray]'): "
        "each actor holds one engine (the model on --gpus-per-worker GPUs, or with --backend openai a client of the "
        "server). --input may then also be a folder or a glob ('corpus/*.txt') of many files; with more than one "
        "file every id is prefixed with the file's path relative to their common folder and a colon (a.txt:0). "
        "Shards and a manifest are kept in OUTPUT.ray/ until the end: a rerun resumes, a worker that dies is "
        "replaced and its work redone. On a cluster: `ray start --head` on one machine, `ray start --address "
        "HEAD:6379` on the others, then --ray-address auto.",
    )
    ExtractOptions.add_cli_args(cluster, only=["engine"])
    RayOptions.add_cli_args(cluster)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..extraction.command import run_extract
    from ..logs import quiet_libraries

    request = ExtractRequest.from_cli_args(args)
    if request.extract.quiet:
        quiet_libraries()
    return run_extract(request)
