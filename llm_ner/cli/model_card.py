"""`llm-ner model-card`: write (or refresh, e.g. with scores) the README.md of a model folder."""

from __future__ import annotations

import argparse
import logging

from ..training.model_card import CardOptions

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "model-card",
        help="write the Hub model card (README.md) of a run, merged or GGUF folder, with its scores",
        description="Writes FOLDER/README.md: the YAML header the Hugging Face Hub reads (base_model, library_name, "
        "tags, datasets and, with --gold and --pred, a model-index holding the span micro-F1 and per-class F1 "
        "exactly as `llm-ner evaluate` computes them), the prompt, the answer format, the training settings and "
        "how to run the model. Training, `llm-ner merge` and `llm-ner export-model` write one already; "
        "`huggingface-cli upload ORG/NAME FOLDER` then publishes the folder.",
    )
    parser.add_argument("folder", help="a folder with llm_ner.json: a training output, merged or GGUF folder")
    CardOptions.add_cli_args(parser, only=["gold", "pred", "eval_name", "base_model_id", "dataset"])
    parser.add_argument("--name", dest="model_name", help="the model's name in the card (default: the folder's)")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..training.model_card import refresh_model_card

    path = refresh_model_card(args.folder, CardOptions.from_cli_args(args))
    log.info(f"wrote {path}")
    return 0
