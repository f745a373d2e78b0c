"""Tag sets and batches of the baseline taggers: BIO tags of a label set, sentences cut into
taggable pieces, padded tensors for each architecture, and length-bucketed training batches."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from ..data import Example, Span, spans_to_tags, split_long
from .config import BaselineConfig

PAD, UNK = "[PAD]", "[UNK]"  # the first two characters of a BiLSTM-CRF vocabulary


def tag_set(labels: Sequence[str]) -> list[str]:
    """O, then B- and I- of every label."""
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in ("B", "I")]


def for_tagging(examples: Sequence[Example], max_chars: int) -> tuple[list[Example], int]:
    """Sentences cut to ``max_chars`` pieces with non-overlapping spans; returns the number of
    spans dropped (nested spans, which BIO cannot write, and spans across a cut)."""
    pieces, dropped = [], 0
    for ex in examples:
        kept: list[Span] = []
        for span in ex.spans:
            if any(span.overlaps(k) for k in kept):
                dropped += 1
            else:
                kept.append(span)
        for offset, piece in split_long(ex.text, max_chars):
            inside = [
                Span(s.start - offset, s.end - offset, s.label)
                for s in kept
                if s.start >= offset and s.end <= offset + len(piece)
            ]
            dropped += sum(1 for s in kept if s.start < offset + len(piece) and s.end > offset) - len(inside)
            pieces.append(Example(f"{ex.id}@{offset}", piece, inside))
    return pieces, dropped


class TensorBatcher:
    """Turns examples into padded tensors for one architecture."""

    def __init__(self, config: BaselineConfig, tokenizer=None):
        self.config = config
        self.tag_index = {tag: i for i, tag in enumerate(config.tags)}
        self.char_index = {char: i for i, char in enumerate(config.chars)}
        self.tokenizer = tokenizer

    def __call__(self, examples: Sequence[Example], with_tags: bool = True) -> dict:
        width = max(1, max(len(ex.text) for ex in examples))
        lengths = torch.tensor([max(1, len(ex.text)) for ex in examples])
        batch = {"mask": torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)}

        def padded(rows: list[list[int]]) -> torch.Tensor:  # one tensor from lists, no per-item writes
            return torch.tensor([row + [0] * (width - len(row)) for row in rows], dtype=torch.long)

        if with_tags:
            index = self.tag_index
            batch["tags"] = padded([[index[t] for t in spans_to_tags(len(ex.text), ex.spans)] for ex in examples])
        if self.config.arch == "bilstm-crf":
            unk = self.char_index[UNK]
            batch["char_ids"] = padded([[self.char_index.get(c, unk) for c in ex.text] or [unk] for ex in examples])
            return batch
        # Each character is one word; whitespace becomes "_" so it still gets a token.
        words = [[("_" if c.isspace() else c) for c in ex.text] or ["_"] for ex in examples]
        encoded = self.tokenizer(
            words,
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=self.config.max_chars + 2,
            return_tensors="pt",
        )
        index = torch.zeros(len(examples), width, dtype=torch.long)
        for row in range(len(examples)):
            seen: set[int] = set()
            for position, word in enumerate(encoded.word_ids(row)):
                if word is not None and word not in seen and word < width:
                    seen.add(word)
                    index[row, word] = position
        batch.update(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], char_token_index=index)
        return batch


def auto_batch_size(pieces: int) -> int:
    """The default batch size: about 1/100 of the training pieces, between 8 and 64, so a small
    corpus still gets about 100 updates an epoch and a large one full batches."""
    return max(8, min(64, round(pieces / 100)))


def length_bucketed_batches(
    examples: Sequence[Example], size: int, rng: random.Random, chunk_batches: int = 50
) -> list[list[Example]]:
    """Shuffled batches of similar lengths: shuffle, sort by length within chunks of
    ``chunk_batches`` batches, cut into batches, shuffle the batches. A batch is then padded to
    about its own pieces' length, so an epoch costs in proportion to the characters."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), size * chunk_batches):
        chunk = sorted(order[start : start + size * chunk_batches], key=lambda i: len(examples[i].text))
        batches += [[examples[i] for i in chunk[b : b + size]] for b in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches
