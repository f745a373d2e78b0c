"""`BaselineConfig`: the hyper-parameters of a baseline run, and the `llm-ner baseline train` flags.

This module imports no torch: the CLI reads the flags while it builds its parser.
"""

from __future__ import annotations

from dataclasses import dataclass

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
