"""llm-ner: Chinese NER with fine-tuned Qwen LLMs, exact spans and side-by-side metrics.

The pipeline, one package or module per stage: `data` -> `prompting` -> `training` -> `generation` ->
`extraction` (and `serving`) -> `parsing` -> `metrics` -> `report`. The annotator is the Python API:

    ner = llm_ner.load("runs/qwen3-lora")
    ner(["浙商银行企业信贷部叶老桂博士"])   # [[Entity(start=0, end=4, label='company', text='浙商银行', ...), ...]]
"""

__version__ = "0.1.0"

import logging

from .answer_format import align_spans, answer_to_spans, format_answer, parse_answer
from .data import Example, LoadReport, Span, load_examples, read_bio, read_cluener, write_bio, write_cluener
from .errors import DataError
from .labels import LabelSchema
from .metrics import error_breakdown, evaluate, span_scores
from .prompting import PromptTemplate, load_prompt, to_conversation


class _DropNotice(logging.Filter):
    """Drops one log message by its start: notices a user cannot act on."""

    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


# peft imports bitsandbytes, whose CPU backend logs that an optional 4-bit CPU kernel package is missing on
# every import, 4-bit or not. llm-ner only quantizes on CUDA (--load-in-4bit on CPU is refused).
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropNotice("Failed to load CPU gemm_4bit_forward"))



def load(model: str | None = None, **options):
    """An annotator, loaded once and called on texts: see `llm_ner.extraction.api.load`."""
    from .extraction.api import load as load_annotator

    return load_annotator(model, **options)


__all__ = [
    "DataError",
    "Example",
    "LabelSchema",
    "LoadReport",
    "PromptTemplate",
    "Span",
    "align_spans",
    "answer_to_spans",
    "error_breakdown",
    "evaluate",
    "format_answer",
    "load",
    "load_examples",
    "load_prompt",
    "parse_answer",
    "read_bio",
    "read_cluener",
    "span_scores",
    "to_conversation",
    "write_bio",
    "write_cluener",
]
