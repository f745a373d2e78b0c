"""`llm-ner convert`: an NER file -> chat instructions (TRL prompt-completion JSON lines)."""

from __future__ import annotations

import argparse
import sys
import time

from ..answer_format import ANSWER_FORMATS
from ..data import check_output_path
from ..prompting import DEFAULT_PROMPT, conversion_sidecar, convert_file, load_prompt
from .common import add_input_format, add_lenient


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="turn CLUENER/BIO data into chat instructions (TRL prompt-completion JSON lines)",
        description="Convert an NER file into JSON lines {id, prompt: [system, user], "
        "completion: [assistant]} for TRL's SFTTrainer, and OUTPUT.meta.json beside them recording the "
        "prompt (a full copy) and answer format, which training adopts. Bad records stop the run with "
        "FILE:LINE: reason unless --lenient.",
    )
    parser.add_argument("--input", required=True, help="CLUENER JSON lines or char-per-line BIO/BIOES/BMES file")
    parser.add_argument("--output", required=True, help="output JSON lines file")
    parser.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help="prompt YAML path or shipped name (default: %(default)s; see prompts/)",
    )
    parser.add_argument(
        "--format",
        default="mentions",
        choices=ANSWER_FORMATS,
        help="assistant answer: mentions = JSON list in reading order (exact spans); "
        "grouped = {label: [strings]} (default: %(default)s)",
    )
    add_input_format(
        parser,
        help="input file format; auto picks cluener for JSON lines, else a tag "
        "scheme detected from the tags (default: %(default)s)",
    )
    add_lenient(parser, help="skip bad records (printed with their lines) instead of stopping")
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_output_path(args.output, {"--input": args.input, "--prompt": args.prompt})
    conversion, report = convert_file(
        args.input, args.output, load_prompt(args.prompt), args.format, args.input_format, args.lenient
    )
    report.print()
    print(
        f"wrote {conversion.records} {args.format} conversations to {args.output} "
        f"(prompt {conversion.prompt.name} {conversion.prompt_identity}, recorded in "
        f"{conversion_sidecar(args.output)}) in {time.perf_counter() - started:.2f}s",
        file=sys.stderr,
    )
    return 0
