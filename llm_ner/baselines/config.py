"""`BaselineConfig`: the hyper-parameters of a baseline run; the other flags of `llm-ner baseline train|predict`.

This module imports no torch: the CLI reads the flags while it builds its parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import INPUT_FORMATS, SENTENCE_INPUT_FORMATS
from ..options import CliOptions, non_negative_int, option, positive_float, positive_int

ARCHS = ("bilstm-crf", "bert-crf", "bert-bilstm-crf")


@dataclass
class BaselineConfig(CliOptions):
    """Hyper-parameters of a baseline run (saved beside the weights, in this field order)."""

    arch: str = option("bilstm-crf", required=True, choices=ARCHS)
    encoder: str = option(  # any AutoModel id or local directory (BERT archs)
        "bert-base-chinese", help="BERT archs: AutoModel id or local directory, e.g. hfl/chinese-roberta-wwm-ext"
    )
    epochs: int = option(20, type=positive_int, help="at most this many epochs (default 20)")
    batch_size: int = option(  # 0: from the corpus size, see tagging.auto_batch_size
        0, type=non_negative_int, help="sentences per batch; 0 (default): training pieces / 100, between 8 and 64"
    )
    patience: int = option(
        4,
        type=non_negative_int,
        help="stop after this many epochs without a better dev F1 (default 4; 0: run every epoch)",
    )
    learning_rate: float = option(  # BiLSTM-CRF, and the heads (LSTM, CRF) of the BERT archs
        1e-3, flag="--lr", type=positive_float, help="BiLSTM-CRF / head learning rate"
    )
    encoder_learning_rate: float = option(
        3e-5, flag="--encoder-lr", type=positive_float, help="BERT encoder learning rate"
    )
    embedding_dim: int = option(128, type=positive_int, help="BiLSTM-CRF character embedding size")
    hidden_size: int = option(256, type=positive_int, help="BiLSTM width (both directions)")
    dropout: float = 0.3
    max_chars: int = 256
    seed: int = option(42, type=non_negative_int)
    labels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    chars: tuple[str, ...] = ()


@dataclass(kw_only=True)
class BaselineTrainOptions(CliOptions):
    """`llm-ner baseline train` besides the hyper-parameters: the data, the output, how to read and report."""

    train: str = option(required=True, help="training file (CLUENER or BIO)")
    dev: str | None = option(None, help="dev file for model selection")
    out: str = option(required=True, help="output directory")
    max_train_samples: int | None = option(None, type=positive_int)
    input_format: str = option("auto", choices=INPUT_FORMATS)
    lenient: bool = option(False)
    quiet: bool = option(False)


@dataclass(kw_only=True)
class BaselinePredictOptions(CliOptions):
    """`llm-ner baseline predict`: a trained baseline over a file of sentences."""

    model: str = option(required=True, help="baseline directory")
    input: str = option(required=True, help="text, JSON lines, CLUENER or BIO file")
    output: str = option(required=True)
    batch_size: int = option(64, type=positive_int)
    input_format: str = option("auto", choices=SENTENCE_INPUT_FORMATS)
    lenient: bool = option(False)
    quiet: bool = option(False)
