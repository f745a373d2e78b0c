"""`llm-ner curve`: add a point to an annotation loop's learning curve (dev F1 against labelled sentences)."""

from __future__ import annotations

import json

from ..report.options import CurveOptions
from .command import Command

COMMAND = Command(
    "curve",
    help="add a learning-curve point: dev F1 of a model against the sentences it was trained on",
    description="Scores --pred against --gold (span micro-F1 with a 95% bootstrap interval over the gold "
    "sentences) and writes it into the learning-curve file --output as the point of (--arm, --round, "
    "--seed), with the number of sentences, characters and entities in --labelled. A point already there "
    "for the same arm, round and seed is replaced, so a rerun loop never doubles one. `llm-ner report "
    "--learning-curve FILE` draws the curve; scripts/annotation_loop.sh writes one.",
    options=CurveOptions,
    call="llm_ner.report.learning_curve:add_point",
    show=lambda point: print(json.dumps(point, ensure_ascii=False)),
)
add_parser, run = COMMAND.add_parser, COMMAND.run
