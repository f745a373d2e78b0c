"""`llm-ner export-model`: a fine-tuned model as GGUF for llama.cpp and Ollama, with its Modelfile and card."""

from __future__ import annotations

import argparse
import logging

from ..gguf_export.export import ExportOptions
from ..training.model_card import CardOptions

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export-model",
        help="GGUF for llama.cpp and Ollama: merge, convert with llama.cpp's converter, Modelfile, model card",
        description="Merges a LoRA adapter into its base (or takes a merged model folder), converts it with "
        "llama.cpp's own convert_hf_to_gguf.py into each --gguf type and writes into --out: NAME-TYPE.gguf (the "
        "Qwen chat template plus the run's prompt, labels and answer format as llm_ner.* metadata), llm_ner.json and "
        "prompt.yaml (what `llm-ner extract --model OUT` reads), an Ollama Modelfile (`ollama create NAME -f "
        "OUT/Modelfile`) and README.md, the model card (`huggingface-cli upload ORG/NAME OUT` publishes the folder). "
        "Needs pip install 'llm-ner[gguf]'; the converter comes from the llama-cpp-python sdist (--fetch-converter).",
    )
    ExportOptions.add_cli_args(parser)
    card = parser.add_argument_group("model card", "scores and Hub fields of README.md")
    CardOptions.add_cli_args(card, only=["gold", "pred", "eval_name", "base_model_id", "dataset"])
    return parser


def run(args: argparse.Namespace) -> int:
    from ..gguf_export.export import export_model

    options = ExportOptions.from_cli_args(args)
    card = CardOptions.from_cli_args(args, model_name=options.model_name)
    written = export_model(options, card)
    log.info(
        f"wrote {', '.join(p.name for p in written)}, {options.out}/Modelfile and README.md; "
        f"Ollama: ollama create {options.model_name} -f {options.out}/Modelfile"
    )
    return 0
