"""`llm-ner select`: the sentences to annotate next (least certain, or where two systems disagree)."""

from __future__ import annotations

from ..annotation_loop import SelectOptions
from .command import Command

COMMAND = Command(
    "select",
    help="pick the sentences to annotate next: least certain, where two systems disagree most, or at random",
    description="Writes the N sentences whose predictions are least certain (1 - the lowest entity or "
    "answer score written by `llm-ner extract`) or, with two --pred files, where the systems disagree "
    "most (spans only one predicts), or --by random --seed S: a seeded random sample (the control arm of "
    "an annotation loop; scores not needed). Output: CLUENER JSON lines with the first file's predictions "
    "and scores, ready for `llm-ner export --to labelstudio`.",
    options=SelectOptions,
    call="llm_ner.annotation_loop:select",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
