"""Baseline taggers: BiLSTM-CRF over characters, BERT-CRF and BERT-BiLSTM-CRF over any encoder.

Every model tags characters with BIO labels: the BERT models feed each character as one "word"
(`is_split_into_words`) and read the first sub-token of each, so mixed Chinese, digits and Latin
text never loses a span to sub-word boundaries.
"""

from __future__ import annotations

import torch
from torch import nn

from .crf import CRF

ARCHS = ("bilstm-crf", "bert-crf", "bert-bilstm-crf")
PAD, UNK = "[PAD]", "[UNK]"


class BiLSTMCRF(nn.Module):
    """Character embeddings trained from scratch -> BiLSTM -> CRF."""

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.3,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embedding_dim, hidden_size // 2, num_layers=num_layers, batch_first=True, bidirectional=True
        )
        self.dropout = nn.Dropout(dropout)
        self.emit = nn.Linear(hidden_size, num_tags)
        self.crf = CRF(num_tags)

    def emissions(self, batch: dict) -> torch.Tensor:
        embedded = self.dropout(self.embedding(batch["char_ids"]))
        lengths = batch["mask"].sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=embedded.shape[1])
        return self.emit(self.dropout(output))


class BertCRF(nn.Module):
    """A pretrained (or local) encoder -> [BiLSTM] -> CRF, on the first sub-token of each character."""

    def __init__(self, encoder: nn.Module, num_tags: int, lstm_hidden: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        width = encoder.config.hidden_size
        self.lstm = None
        if lstm_hidden:
            self.lstm = nn.LSTM(width, lstm_hidden // 2, batch_first=True, bidirectional=True)
            width = lstm_hidden
        self.dropout = nn.Dropout(dropout)
        self.emit = nn.Linear(width, num_tags)
        self.crf = CRF(num_tags)

    def emissions(self, batch: dict) -> torch.Tensor:
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        # Gather the first sub-token of every character: (batch, chars, width).
        index = batch["char_token_index"].unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        chars = torch.gather(hidden, 1, index)
        if self.lstm is not None:
            chars, _ = self.lstm(chars)
        return self.emit(self.dropout(chars))


def loss_and_paths(model: nn.Module, batch: dict, decode: bool = False):
    """CRF loss of a batch and, with ``decode``, the best tag paths."""
    emissions = model.emissions(batch)
    loss = model.crf(emissions, batch["tags"], batch["mask"]) if "tags" in batch else None
    paths = model.crf.decode(emissions, batch["mask"]) if decode else None
    return loss, paths
