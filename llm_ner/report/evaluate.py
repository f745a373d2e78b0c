"""`llm-ner evaluate`: one prediction file against gold, span-level and CLUENER string-level tables."""

from __future__ import annotations

import json
import logging

from ..data import check_output_path, load_examples, write_text_atomic
from ..errors import DataError
from ..metrics import evaluate
from .inputs import parse_counters, parse_failure_line
from .options import EvaluateOptions
from .tables import format_evaluation

log = logging.getLogger(__name__)


def _filter_min_score(path: str, input_format: str, pred: list, min_score: float) -> list:
    """`evaluate --min-score`: drop predicted entities scoring below the threshold."""
    from ..confidence import filter_by_score, read_scores

    scores = read_scores(path, input_format)
    if not scores:
        raise DataError(path, None, "carries no entity scores for --min-score (write them with `llm-ner extract`)")
    kept, dropped = filter_by_score(pred, scores, min_score)
    total = sum(len(ex.spans) for ex in pred)
    log.info(f"--min-score {min_score}: kept {total - dropped} of {total} predicted entities")
    return kept


def run_evaluate(options: EvaluateOptions) -> dict:
    """Score ``options.pred`` against ``options.gold``: the result (printed as tables, and written as JSON with
    ``options.json``), the parse counters `llm-ner extract` wrote included."""
    if options.json:
        check_output_path(options.json, {"--gold": options.gold, "--pred": options.pred}, "--json")
    result = score_files(options)
    print(format_evaluation(result))
    if options.json:
        write_text_atomic(json.dumps(result, ensure_ascii=False, indent=2) + "\n", options.json)
        log.info(f"\nwrote {options.json}")
    return result


def score_files(options: EvaluateOptions) -> dict:
    """The scores `llm-ner evaluate` prints and writes (its JSON), computed without printing: the one scorer
    of a prediction file, which the model card calls too."""
    gold, gold_report = load_examples(options.gold, options.gold_format, lenient=options.lenient)
    pred, pred_report = load_examples(options.pred, options.pred_format, lenient=options.lenient)
    if options.min_score is not None:
        pred = _filter_min_score(options.pred, options.pred_format, pred, options.min_score)
    for report in (gold_report, pred_report):
        if report.skipped or report.warnings:
            report.print()
    labels = sorted({s.label for ex in gold for s in ex.spans})
    result = evaluate(gold, pred, labels, pred_path=options.pred, skipped_gold=gold_report.skipped)
    result = {"gold": str(options.gold), "pred": str(options.pred), **result}
    parsing = parse_counters(options.pred)  # written by `llm-ner extract`: say how many answers were unreadable
    if parsing:
        result["parsing"] = parsing
    unparsed = parse_failure_line(parsing)
    if unparsed:
        result["warnings"] = [*result.get("warnings", []), unparsed]
    return result
