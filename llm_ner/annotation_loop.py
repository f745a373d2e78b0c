"""The annotation loop's own steps: pick the sentences to annotate next (`select`), write predictions as
pre-annotations for Label Studio / doccano, or read corrected annotations back as CLUENER (`export`).
`scripts/annotation_loop.sh` chains them with `extract`, `train` and `curve`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .confidence import SELECTIONS
from .data import INPUT_FORMATS, check_output_path, load_examples, write_cluener, write_jsonl_atomic
from .errors import UsageError
from .options import CliOptions, non_negative_int, option, positive_int

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SelectOptions(CliOptions):
    """`llm-ner select`: how many sentences, by which rule, from which predictions."""

    pred: list[str] = option(
        required=True,
        action="append",
        help="predictions (give two for disagreement; --by random: any CLUENER file of the sentences)",
    )
    n: int = option(100, flag="-n", type=positive_int, help="sentences to pick (default: %(default)s)")
    by: str = option(required=True, choices=SELECTIONS)
    seed: int = option(0, type=non_negative_int, help="--by random: the sample's seed (default: %(default)s)")
    exclude: list[str] = option(
        action="append",
        default_factory=list,
        metavar="FILE",
        help="never pick a sentence whose id is in FILE (sentences already labelled; repeatable)",
    )
    output: str = option(required=True, help="CLUENER JSON lines of the chosen sentences")
    input_format: str = option("cluener", choices=INPUT_FORMATS)
    lenient: bool = option(False)

    def __post_init__(self) -> None:
        if self.by == "disagreement" and len(self.pred) != 2:
            raise UsageError("--by disagreement needs two --pred files (two systems on the same sentences)")
        if self.by == "uncertainty" and len(self.pred) != 1:
            raise UsageError("--by uncertainty takes one --pred file (with scores from `llm-ner extract`)")
        if self.by == "random" and len(self.pred) != 1:
            raise UsageError("--by random takes one --pred file (the sentences to sample from)")


def select(options: SelectOptions) -> int:
    """`llm-ner select`: write the chosen sentences; how many."""
    from .confidence import labelled_ids, select_for_annotation

    inputs = {f"--{kind} {path}": path for kind in ("pred", "exclude") for path in getattr(options, kind)}
    check_output_path(options.output, inputs)
    records = select_for_annotation(
        options.pred, options.n, options.by, options.input_format, options.lenient, seed=options.seed,
        exclude=labelled_ids(options.exclude),
    )  # fmt: skip
    if len(records) < options.n:
        log.warning(f"warning: only {len(records)} sentences left to pick from (-n {options.n})")
    count = write_jsonl_atomic(records, options.output)
    log.info(f"wrote {count} sentences to annotate next ({options.by}) to {options.output}")
    return count


@dataclass(kw_only=True)
class ExportOptions(CliOptions):
    """`llm-ner export`: which file, to which format, with which gold."""

    pred: str = option(required=True, flag="pred", metavar="PRED", help="predictions or annotations to convert")
    to: str = option(required=True, choices=("labelstudio", "doccano", "cluener"))
    output: str = option(required=True, help="output file")
    gold: str | None = option(None, help="gold file whose spans become the Label Studio annotation")
    gold_format: str = option("auto", choices=INPUT_FORMATS)
    input_format: str = option("auto", choices=INPUT_FORMATS, help="format of PRED")
    as_annotation: bool = option(
        False, help="Label Studio: write PRED's spans as the (finished) annotation instead of a prediction"
    )
    lenient: bool = option(False, help="skip bad records instead of stopping")

    def __post_init__(self) -> None:
        if self.gold and self.to == "cluener":
            raise UsageError("--gold goes with --to labelstudio (gold spans as annotations beside the predictions)")
        if self.gold and self.to != "labelstudio":
            raise UsageError("--gold needs --to labelstudio (doccano has no separate pre-annotations)")


def export(options: ExportOptions) -> int:
    """`llm-ner export`: write ``options.pred`` in the format of ``options.to``; how many records."""
    from .confidence import read_scores
    from .data import write_annotations

    check_output_path(options.output, {"PRED": options.pred, "--gold": options.gold})
    examples, report = load_examples(options.pred, options.input_format, lenient=options.lenient, allow_empty=True)
    if report.skipped or report.warnings:
        report.print()
    if options.to == "cluener":
        count = write_cluener(examples, options.output)
    else:
        gold = None
        if options.gold:
            gold_examples, _ = load_examples(options.gold, options.gold_format, lenient=options.lenient)
            gold = {ex.id: ex for ex in gold_examples}
        skipped = frozenset(error.line for error in report.skipped if error.line is not None)
        scores = read_scores(options.pred, options.input_format, skipped)
        count = write_annotations(
            examples, options.output, options.to, scores, gold, as_annotation=options.as_annotation
        )
    log.info(f"wrote {count} {options.to} records to {options.output}")
    return count
