"""The flags of `llm-ner evaluate`, `llm-ner report` and `llm-ner curve` as typed options (imports no torch and
none of the report's own modules: the command line builds its parsers from them)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..data import INPUT_FORMATS
from ..errors import UsageError
from ..options import CliOptions, non_negative_float, non_negative_int, option, positive_float, positive_int

# Bootstrap resamples: far more than a 95% interval needs (1 000 is the default); 10^8 ran for hours and, before
# the resamples were drawn in chunks, took 44.7 GiB (issue 31).
MAX_RESAMPLES = 100_000


def resample_count(value: str) -> int:
    """Bootstrap resamples, 1 to `MAX_RESAMPLES` (an argparse type)."""
    number = positive_int(value)
    if number > MAX_RESAMPLES:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_RESAMPLES}, got {value!r}")
    return number


@dataclass
class EvaluateOptions(CliOptions):
    """`llm-ner evaluate`: predictions against gold."""

    gold: str = option(required=True, help="gold file (CLUENER or BIO)")
    pred: str = option(required=True, help="predictions (CLUENER JSON lines)")
    gold_format: str = option("auto", choices=INPUT_FORMATS)
    pred_format: str = option("cluener", choices=INPUT_FORMATS, help="predictions format (default: %(default)s)")
    min_score: float | None = option(
        None,
        type=positive_float,
        metavar="X",
        help="score only predicted entities whose confidence (written by `llm-ner extract`) is at least X (0-1]",
    )
    json: str | None = option(None, metavar="OUT", help="also write all scores as JSON")
    lenient: bool = option(False, help="skip bad records instead of stopping")

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0 < self.min_score <= 1:
            raise UsageError(f"--min-score is a probability: between 0 and 1, got {self.min_score}")


@dataclass(kw_only=True)
class ReportOptions(CliOptions):
    """`llm-ner report`: several systems side by side, and a learning curve."""

    gold: str = option(required=True)
    pred: list[str] = option(
        action="append",
        default_factory=list,
        metavar="NAME=FILE",
        help="a system's CLUENER predictions (repeat for each system; required unless --learning-curve)",
    )
    published: str | None = option(None, help="published figures to add as rows, e.g. eval/published_cluener.json")
    out: str = option(required=True, help="output directory")
    resamples: int = option(
        1000, type=resample_count, help=f"bootstrap resamples, at most {MAX_RESAMPLES} (default: %(default)s)"
    )
    seed: int = option(0, type=non_negative_int)
    note: str | None = option(None, help="a paragraph for the top of report.md (how the systems were trained)")
    learning_curve: str | None = option(
        None,
        metavar="FILE",
        help="learning-curve points written by `llm-ner curve` (scripts/annotation_loop.sh): adds their table "
        "and learning_curve.png (dev F1 against labelled sentences, one line per selection arm)",
    )

    def __post_init__(self) -> None:
        if not self.pred and not self.learning_curve:
            raise UsageError("--pred is required (a report of a learning curve alone: --learning-curve FILE)")


@dataclass(kw_only=True)
class CurveOptions(CliOptions):
    """`llm-ner curve`: one learning-curve point."""

    gold: str = option(required=True, help="gold file (the dev set)")
    pred: str = option(required=True, help="the model's predictions on --gold (CLUENER JSON lines)")
    labelled: str = option(required=True, help="the labelled sentences the model was trained on")
    arm: str = option(required=True, help="the selection arm, e.g. uncertainty or random")
    round: int = option(required=True, type=non_negative_int, help="the loop round (0: the seed set)")
    seed: int = option(0, type=non_negative_int, help="the loop's seed (default: %(default)s)")
    train_seconds: float | None = option(
        None,
        type=non_negative_float,
        help="how long the model trained, shown beside its F1 in the report's learning-curve table",
    )
    resamples: int = option(
        1000, type=resample_count, help=f"bootstrap resamples, at most {MAX_RESAMPLES} (default: %(default)s)"
    )
    output: str = option(required=True, help="learning-curve JSON lines file (created or updated)")
    gold_format: str = option("auto", choices=INPUT_FORMATS)
