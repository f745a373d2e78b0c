"""`llm-ner evaluate`: predictions against gold, span-level and CLUENER string-level."""

from __future__ import annotations

from ..report.options import EvaluateOptions
from .command import Command

COMMAND = Command(
    "evaluate",
    help="score predictions against gold: span-level and CLUENER string-level tables",
    description="Exact span-level precision/recall/F1 per class (micro, macro), the CLUENER "
    "leaderboard's string-level scores and an error breakdown. Predictions are CLUENER "
    "JSON lines matched to gold by id (records without id: by position).",
    options=EvaluateOptions,
    call="llm_ner.report.evaluate:run_evaluate",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
