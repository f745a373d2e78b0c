"""llm-ner: Chinese NER with fine-tuned Qwen LLMs, exact spans and side-by-side metrics.

The pipeline, one module per stage: `data` -> `prompting` -> `parsing` -> `metrics`.
"""

__version__ = "0.1.0"

from .data import (
    DataError,
    Example,
    LoadReport,
    Span,
    load_examples,
    read_bio,
    read_cluener,
    write_bio,
    write_cluener,
)
from .metrics import error_breakdown, evaluate, span_scores
from .parsing import align_spans, answer_to_spans, parse_answer
from .prompting import LabelSchema, PromptTemplate, format_answer, load_prompt, to_conversation

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
