"""`llm-ner baseline train|predict`: the BiLSTM-CRF, BERT-CRF and BERT-BiLSTM-CRF baselines."""

from __future__ import annotations

import argparse
import sys

from ..baselines import BaselineConfig
from ..data import (
    SENTENCE_INPUT_FORMATS,
    check_output_path,
    example_to_cluener,
    load_examples,
    read_inputs,
    write_jsonl_atomic,
)
from ..options import positive_int
from .common import add_input_format, add_lenient, add_quiet, quiet_libraries


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "baseline",
        help="train / run the BiLSTM-CRF, BERT-CRF and BERT-BiLSTM-CRF baselines",
        description="Character-level BIO taggers with a CRF, reading the same CLUENER/BIO files and "
        "writing the same CLUENER predictions as the LLM path.",
    )
    commands = parser.add_subparsers(dest="baseline_command", required=True, metavar="train|predict")
    train = commands.add_parser("train", help="train a baseline; keeps the best epoch by dev span F1")
    BaselineConfig.add_cli_args(train, only=["arch"])
    train.add_argument("--train", required=True, help="training file (CLUENER or BIO)")
    train.add_argument("--dev", help="dev file for model selection")
    train.add_argument("--out", required=True, help="output directory")
    BaselineConfig.add_cli_args(
        train,
        only=[
            "encoder",
            "epochs",
            "batch_size",
            "patience",
            "learning_rate",
            "encoder_learning_rate",
            "hidden_size",
            "embedding_dim",
        ],
    )
    train.add_argument("--max-train-samples", type=positive_int)
    BaselineConfig.add_cli_args(train, only=["seed"])
    add_input_format(train)
    add_lenient(train)
    add_quiet(train)
    predict = commands.add_parser(
        "predict",
        help="write CLUENER predictions with a trained baseline",
        description="CLUENER JSON lines with, as `llm-ner extract` writes them, each entity's probability under "
        "the CRF (scores: the decoded tags over the entity and no longer entity, summed over all tag paths) and "
        "answer_score (the decoded path's probability per character, P(path)^(1/characters)), so `llm-ner select "
        "--by uncertainty` and `evaluate --min-score` read baseline predictions too.",
    )
    predict.add_argument("--model", required=True, help="baseline directory")
    predict.add_argument("--input", required=True, help="text, JSON lines, CLUENER or BIO file")
    predict.add_argument("--output", required=True)
    predict.add_argument("--batch-size", type=positive_int, default=64)
    add_input_format(predict, choices=SENTENCE_INPUT_FORMATS)
    add_lenient(predict)
    add_quiet(predict)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.quiet:
        quiet_libraries()
    if args.baseline_command == "train":
        return _train(args)
    return _predict(args)


def _train(args: argparse.Namespace) -> int:
    from ..baselines import log_stderr, train_baseline

    inputs = {"--train": args.train, "--dev": args.dev, "--encoder": args.encoder}
    check_output_path(args.out, inputs, "--out", writes_folder=True)
    train, report = load_examples(args.train, args.input_format, lenient=args.lenient)
    dev, dev_report = load_examples(args.dev, args.input_format, lenient=args.lenient) if args.dev else ([], None)
    for r in (report, dev_report):
        if r is not None and (r.skipped or r.warnings):
            r.print()
    if args.max_train_samples:
        train = train[: args.max_train_samples]
    config = BaselineConfig.from_cli_args(args)
    result = train_baseline(train, dev, config, args.out, progress=not args.quiet, log=log_stderr)
    kept = f"best dev span micro-F1 {result['best']:.4f}" if dev else f"lowest train loss {-result['best']:.4f}"
    print(f"{kept}; model in {args.out}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..baselines import load_baseline, predict_examples
    from ..confidence import scores_field

    check_output_path(args.output, {"--input": args.input, "--model": args.model})
    model, batcher = load_baseline(args.model)
    examples = read_inputs(args.input, args.input_format, lenient=args.lenient)
    scores: dict = {}
    answer_scores: dict = {}
    predicted = predict_examples(
        model, batcher, examples, args.batch_size, not args.quiet, scores=scores, answer_scores=answer_scores
    )
    records = []
    for example in predicted:
        record = example_to_cluener(example)
        if scores.get(example.id):
            record["scores"] = scores_field(example, scores[example.id])
        record["answer_score"] = round(answer_scores[example.id], 6)
        records.append(record)
    count = write_jsonl_atomic(records, args.output)
    print(f"wrote {count} predictions to {args.output}", file=sys.stderr)
    return 0
