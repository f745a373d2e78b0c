"""`llm-ner tiny-model`: a random-weight Qwen2/Qwen3 model directory (tiny, or a real shape)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import check_output_path, guess_format, load_examples
from ..errors import UsageError
from ..options import non_negative_int, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tiny-model",
        help="save a random-weight Qwen2/Qwen3 model (tiny, or a real shape) with a local or real tokenizer",
        description="A model directory loadable with AutoModelForCausalLM/AutoTokenizer.from_pretrained: "
        "random weights and either a byte-level BPE tokenizer built here, in which every character of the "
        "texts is one token, with Qwen's special tokens and the real Qwen chat template from the trl package; "
        "or, with --tokenizer, the files of a real tokenizer (e.g. ../shared/tokenizers/qwen2.5) and an "
        "embedding of its size (151 936 rows for Qwen). --shape takes the architecture of a real model "
        "from qwen_shapes.json; explicit sizes override it. Random weights prove plumbing and speed, not quality.",
    )
    parser.add_argument("--arch", choices=("qwen2", "qwen3"), help="default: from --shape or --tokenizer, else qwen3")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--texts",
        nargs="+",
        help="texts for the tokenizer: files of plain lines or CLUENER files "
        "(default: CLUENER train/dev from LLM_NER_DATA plus the shipped prompts)",
    )
    parser.add_argument("--tokenizer", metavar="DIR", help="use this hub-format tokenizer (copied unchanged)")
    parser.add_argument("--shape", metavar="NAME", help="a real architecture, e.g. Qwen2.5-0.5B-Instruct")
    parser.add_argument("--shapes-file", metavar="FILE", help="default: ../shared/qwen_shapes.json beside the checkout")
    parser.add_argument("--hidden-size", type=positive_int, help="default 128 (or the shape's)")
    parser.add_argument("--num-layers", type=positive_int, help="default 2 (or the shape's)")
    parser.add_argument("--num-heads", type=positive_int, help="default 4 (or the shape's)")
    parser.add_argument("--num-kv-heads", type=positive_int, help="default 2 (or the shape's)")
    parser.add_argument("--intermediate-size", type=positive_int, help="default 3 x hidden (or the shape's)")
    parser.add_argument("--vocab-size", type=positive_int, help="embedding rows (default: from the tokenizer/shape)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..tiny import build_tiny_model, default_texts, read_shape, shape_arguments

    inputs = {"--tokenizer": args.tokenizer, "--shapes-file": args.shapes_file}
    inputs.update({f"--texts {path}": path for path in args.texts or ()})
    check_output_path(args.out, inputs, "--out", writes_folder=True)
    shape: dict = {}
    arch, real = args.arch, None
    if args.shape:
        try:
            real = read_shape(args.shape, args.shapes_file)
        except (FileNotFoundError, KeyError) as error:
            raise UsageError(f"--shape: {error.args[0]}") from None
        if arch and arch != real["model_type"]:
            raise UsageError(f"--arch {arch} contradicts --shape {args.shape} ({real['model_type']})")
        arch = real["model_type"]
        shape = shape_arguments(real)
    explicit = {
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "num_heads": args.num_heads,
        "num_kv_heads": args.num_kv_heads,
        "intermediate_size": args.intermediate_size,
    }
    for name, value in explicit.items():  # explicit sizes override the shape (else build_config's defaults)
        if value is not None:
            shape[name] = value
    if args.hidden_size is not None or args.num_heads is not None:
        shape.pop("head_dim", None)  # follows the new width
    if args.tokenizer:
        if args.texts:
            raise UsageError("--texts builds a tokenizer; --tokenizer uses an existing one: give one of them")
        if not (Path(args.tokenizer) / "tokenizer_config.json").is_file():
            raise UsageError(f"--tokenizer {args.tokenizer}: no tokenizer_config.json there")
        texts: list[str] = []
    elif args.texts:
        texts = []
        for path in args.texts:
            if guess_format(path) == "cluener":
                texts += [ex.text for ex in load_examples(path, "cluener", lenient=True)[0]]
            else:
                texts += Path(path).read_text(encoding="utf-8").splitlines()
        texts += default_texts(limit=0)  # prompts and JSON vocabulary
    else:
        texts = default_texts()
    vocab_size = args.vocab_size or (real["vocab_size"] if real else None)
    try:
        out = build_tiny_model(
            args.out, arch, texts, seed=args.seed, tokenizer_dir=args.tokenizer, vocab_size=vocab_size, **shape
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    print(
        f"saved a random-weight {config.model_type} model (hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocab {config.vocab_size}) to {out}",
        file=sys.stderr,
    )
    return 0
