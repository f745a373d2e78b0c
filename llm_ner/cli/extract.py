"""`llm-ner extract`: batched, resumable extraction with a local model or an OpenAI-compatible server."""

from __future__ import annotations

import argparse

from ..data import check_output_path
from ..errors import UsageError
from ..extraction import ExtractOptions, ModelOptions, run_extraction
from ..openai_backend import OpenAIOptions
from ..ray_extraction import RayOptions
from .common import check_model_folder, quiet_libraries

BACKENDS = ("local", "openai")
ENGINES = ("local", "ray")


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
    remote.add_argument("--backend", choices=BACKENDS, default="local", help="(default: %(default)s)")
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
    cluster.add_argument("--engine", choices=ENGINES, default="local", help="(default: %(default)s)")
    RayOptions.add_cli_args(cluster)
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
    ray_options = RayOptions.from_cli_args(args)
    if args.engine == "ray":
        from ..ray_extraction import run_ray_extraction

        return run_ray_extraction(
            ModelOptions.from_cli_args(args), ExtractOptions.from_cli_args(args), ray_options, openai_options
        )
    if ray_options != RayOptions():
        raise UsageError("--ray-address, --workers, --gpus-per-worker, --cpus-per-worker, --output-dir and "
                         "--part-records need --engine ray")  # fmt: skip
    return run_extraction(ModelOptions.from_cli_args(args), ExtractOptions.from_cli_args(args), openai_options)
