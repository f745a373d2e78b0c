"""`llm-ner merge`: a LoRA adapter merged into its base model."""

from __future__ import annotations

from ..training.merge import MergeOptions
from .command import Command

COMMAND = Command(
    "merge",
    help="merge a LoRA adapter into its base model",
    description="Loads the adapter's base model unquantized, merges the LoRA weights and saves a "
    "plain model directory with the tokenizer (Qwen3 thinking off by default) and run metadata.",
    options=MergeOptions,
    call="llm_ner.training.merge:merge",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
