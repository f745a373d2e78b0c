"""Baselines: BiLSTM-CRF, BERT-CRF and BERT-BiLSTM-CRF trained and run on the same files, with the
same metrics and the same CLUENER-format predictions as the LLM path.

    llm-ner baseline train --arch bilstm-crf --train train.json --dev dev.json --out runs/bilstm
    llm-ner baseline train --arch bert-crf --encoder bert-base-chinese --train ... --dev ... --out ...
    llm-ner baseline predict --model runs/bilstm --input dev.json --output runs/bilstm/dev.pred.json

`config` holds `BaselineConfig` (hyper-parameters and their flags), `tagging` the tag sets and
batches, `models` and `crf` the networks, `training` training, prediction, saving and loading.
Names from `tagging` and `training` are imported on first use: they import torch, and the CLI
reads `BaselineConfig` while it builds its parser, before any model is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .config import ARCHS, BaselineConfig

if TYPE_CHECKING:
    from .tagging import TensorBatcher, auto_batch_size, for_tagging, length_bucketed_batches, tag_set
    from .training import (
        bilstm_state_renamed,
        build_model,
        load_baseline,
        log_stderr,
        predict_examples,
        save_baseline,
        train_baseline,
    )

_MODULE_OF = {
    "TensorBatcher": "tagging",
    "auto_batch_size": "tagging",
    "for_tagging": "tagging",
    "length_bucketed_batches": "tagging",
    "tag_set": "tagging",
    "bilstm_state_renamed": "training",
    "build_model": "training",
    "load_baseline": "training",
    "log_stderr": "training",
    "predict_examples": "training",
    "save_baseline": "training",
    "train_baseline": "training",
}


__getattr__, __dir__ = lazy_attributes(__name__, _MODULE_OF, {"config", "crf", "models", "run", "tagging", "training"})


__all__ = [
    "ARCHS",
    "BaselineConfig",
    "TensorBatcher",
    "auto_batch_size",
    "bilstm_state_renamed",
    "build_model",
    "for_tagging",
    "length_bucketed_batches",
    "load_baseline",
    "log_stderr",
    "predict_examples",
    "save_baseline",
    "tag_set",
    "train_baseline",
]
