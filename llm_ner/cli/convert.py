"""`llm-ner convert`: an NER file -> chat instructions (TRL prompt-completion JSON lines)."""

from __future__ import annotations

import argparse
import sys
import time

from ..answer_format import ANSWER_FORMATS
from ..data import check_output_path, load_examples, write_jsonl_atomic
from ..prompting import DEFAULT_PROMPT, load_prompt, to_conversation
from .common import add_input_format, add_lenient


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="turn CLUENER/BIO data into chat instructions (TRL prompt-completion JSON lines)",
        description="Convert an NER file into JSON lines {id, prompt: [system, user], "
        "completion: [assistant]} for TRL's SFTTrainer. Bad records stop the run with "
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
    prompt = load_prompt(args.prompt)
    labels = prompt.schema.keys if prompt.schema else None
    examples, report = load_examples(args.input, args.input_format, labels=labels, lenient=args.lenient)
    if prompt.schema is None:
        prompt = prompt.with_labels(s.label for ex in examples for s in ex.spans)
    count = write_jsonl_atomic((to_conversation(ex, prompt, args.format) for ex in examples), args.output)
    report.print()
    print(
        f"wrote {count} {args.format} conversations to {args.output} "
        f"(prompt {prompt.name}) in {time.perf_counter() - started:.2f}s",
        file=sys.stderr,
    )
    return 0
