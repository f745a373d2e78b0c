"""`llm-ner tiny-model`: a random-weight Qwen2/Qwen3 model directory (tiny, or a real shape)."""

from __future__ import annotations

from ..tiny import TinyModelOptions
from .command import Command

COMMAND = Command(
    "tiny-model",
    help="save a random-weight Qwen2/Qwen3 model (tiny, or a real shape) with a local or real tokenizer",
    description="A model directory loadable with AutoModelForCausalLM/AutoTokenizer.from_pretrained: "
    "random weights and either a byte-level BPE tokenizer built here, in which every character of the "
    "texts is one token, with Qwen's special tokens and the real Qwen chat template from the trl package; "
    "or, with --tokenizer, the files of a real tokenizer (e.g. ../shared/tokenizers/qwen2.5) and an "
    "embedding of its size (151 936 rows for Qwen). --shape takes the architecture of a real model "
    "from qwen_shapes.json; explicit sizes override it. Random weights prove plumbing and speed, not quality.",
    options=TinyModelOptions,
    call="llm_ner.tiny:tiny_model",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
