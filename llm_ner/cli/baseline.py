"""`llm-ner baseline train|predict`: the BiLSTM-CRF, BERT-CRF and BERT-BiLSTM-CRF baselines."""

from __future__ import annotations

import argparse

from ..baselines.config import BaselineConfig, BaselinePredictOptions, BaselineTrainOptions


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
    BaselineTrainOptions.add_cli_args(train, only=["train", "dev", "out"])
    hyper = ["encoder", "epochs", "batch_size", "patience", "learning_rate", "encoder_learning_rate", "hidden_size"]
    BaselineConfig.add_cli_args(train, only=[*hyper, "embedding_dim"])
    BaselineTrainOptions.add_cli_args(train, only=["max_train_samples"])
    BaselineConfig.add_cli_args(train, only=["seed"])
    BaselineTrainOptions.add_cli_args(train, only=["input_format", "lenient", "quiet"])
    predict = commands.add_parser(
        "predict",
        help="write CLUENER predictions with a trained baseline",
        description="CLUENER JSON lines with, as `llm-ner extract` writes them, each entity's probability under "
        "the CRF (scores: the decoded tags over the entity and no longer entity, summed over all tag paths) and "
        "answer_score (the decoded path's probability per character, P(path)^(1/characters)), so `llm-ner select "
        "--by uncertainty` and `evaluate --min-score` read baseline predictions too.",
    )
    BaselinePredictOptions.add_cli_args(predict)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..baselines import run as baselines
    from ..logs import quiet_libraries

    if args.quiet:
        quiet_libraries()
    if args.baseline_command == "train":
        baselines.train(BaselineTrainOptions.from_cli_args(args), BaselineConfig.from_cli_args(args))
    else:
        baselines.predict(BaselinePredictOptions.from_cli_args(args))
    return 0
