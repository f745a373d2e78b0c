"""`llm-ner export`: predictions (or gold) for Label Studio / doccano, or annotations back as CLUENER."""

from __future__ import annotations

from ..annotation_loop import ExportOptions
from .command import Command

COMMAND = Command(
    "export",
    help="write predictions (or gold) for Label Studio / doccano, or annotations back as CLUENER",
    description="Predictions become pre-annotations to correct: Label Studio tasks with the predictions "
    "(and each entity's confidence as its score) and, with --gold, the gold spans as the annotation; or "
    "doccano JSON lines. --to cluener reads a corrected Label Studio / doccano file (--input-format) back "
    "into CLUENER JSON lines for training.",
    options=ExportOptions,
    call="llm_ner.annotation_loop:export",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
