"""`llm-ner baseline train|predict` as library calls: read the files, train or predict, write, say what was done."""

from __future__ import annotations

import logging
from pathlib import Path

from ..data import check_output_path, example_to_cluener, load_examples, read_inputs, write_jsonl_atomic
from .config import BaselineConfig, BaselinePredictOptions, BaselineTrainOptions

log = logging.getLogger(__name__)


def train(options: BaselineTrainOptions, config: BaselineConfig) -> dict:
    """Train a baseline of ``config`` on ``options.train``, the best epoch by dev span F1 kept in ``options.out``."""
    from .training import log_stderr, train_baseline

    inputs = {"--train": options.train, "--dev": options.dev, "--encoder": config.encoder}
    check_output_path(options.out, inputs, "--out", writes_folder=True)
    examples, report = load_examples(options.train, options.input_format, lenient=options.lenient)
    dev, dev_report = ([], None)
    if options.dev:
        dev, dev_report = load_examples(options.dev, options.input_format, lenient=options.lenient)
    for read in (report, dev_report):
        if read is not None and (read.skipped or read.warnings):
            read.print()
    if options.max_train_samples:
        examples = examples[: options.max_train_samples]
    result = train_baseline(examples, dev, config, options.out, progress=not options.quiet, log=log_stderr)
    kept = f"best dev span micro-F1 {result['best']:.4f}" if dev else f"lowest train loss {-result['best']:.4f}"
    log.info(f"{kept}; model in {options.out}")
    return result


def predict(options: BaselinePredictOptions) -> Path:
    """Write CLUENER predictions of the baseline in ``options.model`` for ``options.input``, with entity and
    answer scores as `llm-ner extract` writes them."""
    from ..confidence import scores_field
    from .training import load_baseline, predict_examples

    check_output_path(options.output, {"--input": options.input, "--model": options.model})
    model, batcher = load_baseline(options.model)
    examples = read_inputs(options.input, options.input_format, lenient=options.lenient)
    scores: dict = {}
    answer_scores: dict = {}
    predicted = predict_examples(
        model, batcher, examples, options.batch_size, not options.quiet, scores=scores, answer_scores=answer_scores
    )
    records = []
    for example in predicted:
        record = example_to_cluener(example)
        if scores.get(example.id):
            record["scores"] = scores_field(example, scores[example.id])
        record["answer_score"] = round(answer_scores[example.id], 6)
        records.append(record)
    count = write_jsonl_atomic(records, options.output)
    log.info(f"wrote {count} predictions to {options.output}")
    return Path(options.output)
