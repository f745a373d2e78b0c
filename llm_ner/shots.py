"""Few-shot prompting: labelled sentences put into each conversation as worked examples.

`ShotPool` holds the labelled sentences of ``--shots-from`` and picks ``K`` of them for each
sentence asked about (``--shot-selection``):

- ``similar``: the K most similar, by cosine similarity of TF-IDF vectors of character 1-2-grams
  (scikit-learn's ``TfidfVectorizer``; Chinese has no spaces, so characters and their pairs are
  the words). Scores are rounded to 12 decimals, so equal similarities tie exactly and ties go to
  the earlier sentence of the file;
- ``random``: K drawn with a generator seeded by ``--shot-seed`` and the sentence's own text, so a
  resumed, sharded or served run draws the same shots for the same sentence;
- ``fixed``: the first K sentences of the file (one shared prompt prefix: the cache covers the shots).

A shot whose text equals the sentence asked about is never used: evaluating on the shots file
does not show the model its answer. Sentences repeated in the file are kept once (the first).

`select` returns the shots in conversation order: the lowest ranked first, the best ranked (the
most similar) last, nearest the question. `few_shot_messages` renders them as user/assistant turns
(`prompting.PromptTemplate.messages`) and, under a token budget, drops shots from the front (the
lowest ranked) until the prompt fits. `prompt_token_counter` counts a prompt's tokens with a local
model's tokenizer, or bounds them from above where there is none (a server's model).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Example, load_examples
from .errors import DataError
from .prompting import PromptTemplate

SHOT_SELECTIONS = ("similar", "random", "fixed")
NGRAM_RANGE = (1, 2)  # character unigrams and bigrams: see the module docstring
# Tokens a chat template adds around each message (Qwen: "<|im_start|>role\n" ... "<|im_end|>\n" is 5).
TEMPLATE_TOKENS_PER_MESSAGE = 16

TokenCounter = Callable[[list[dict]], int]


@dataclass
class ShotPool:
    """Labelled sentences to draw shots from, with the rule that picks them (``selection``, ``seed``)."""

    examples: list[Example]
    selection: str = "similar"
    seed: int = 0
    source: str = ""  # the file, for messages
    _index: Any = field(default=None, repr=False)  # (vectorizer, matrix) of `similar`, built on first use
    _position: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.selection not in SHOT_SELECTIONS:
            raise ValueError(f"shot selection must be one of {', '.join(SHOT_SELECTIONS)}, got {self.selection!r}")
        unique: list[Example] = []
        for example in self.examples:
            if example.text not in self._position:
                self._position[example.text] = len(unique)
                unique.append(example)
        self.examples = unique

    @classmethod
    def load(
        cls,
        path: str | Path,
        labels: Sequence[str] | None = None,
        selection: str = "similar",
        seed: int = 0,
        input_format: str = "auto",
    ) -> ShotPool:
        """The labelled sentences of ``path`` (CLUENER JSON lines or a BIO/BIOES/BMES file); a label
        not in ``labels`` (the prompt's schema) is a `DataError` naming the file and line."""
        examples, _ = load_examples(path, input_format, labels=labels)
        if not examples:
            raise DataError(path, None, "no labelled sentences to take shots from")
        return cls(examples, selection, seed, str(path))

    def __len__(self) -> int:
        return len(self.examples)

    def select(self, text: str, k: int) -> list[Example]:
        """The ``k`` shots for ``text`` in conversation order (best ranked last); fewer if the pool is smaller."""
        return self.select_many([text], k)[0]

    def select_many(self, texts: Sequence[str], k: int) -> list[list[Example]]:
        """`select` for each of ``texts`` (one similarity product for all of them)."""
        if k <= 0:
            return [[] for _ in texts]
        if self.selection == "similar":
            ranked = self._most_similar(texts, k)
        elif self.selection == "random":
            ranked = [self._drawn(text, k) for text in texts]
        else:
            ranked = [self._first(text, k) for text in texts]
        return [[self.examples[i] for i in reversed(order)] for order in ranked]

    def _excluded(self, text: str) -> int | None:
        return self._position.get(text)

    def _first(self, text: str, k: int) -> list[int]:
        excluded = self._excluded(text)
        return [i for i in range(min(k + 1, len(self.examples))) if i != excluded][:k]

    def _drawn(self, text: str, k: int) -> list[int]:
        # A stable hash (not Python's salted hash()): the same text draws the same shots in every process.
        digest = hashlib.sha256(f"{self.seed}\n{text}".encode("utf-8", "surrogatepass")).digest()
        generator = random.Random(int.from_bytes(digest[:8], "big"))
        excluded = self._excluded(text)
        drawn = generator.sample(range(len(self.examples)), min(k + 1, len(self.examples)))
        return [i for i in drawn if i != excluded][:k]

    def _most_similar(self, texts: Sequence[str], k: int) -> list[list[int]]:
        import numpy as np

        vectorizer, matrix = self._similarity_index()
        # Rows are L2-normalised by TfidfVectorizer: the dot product is the cosine.
        scores = (vectorizer.transform(list(texts)) @ matrix.T).toarray()
        ranked = []
        for text, row in zip(texts, np.round(scores, 12)):
            excluded = self._excluded(text)
            order = np.argsort(-row, kind="stable")  # stable: equal scores keep file order
            ranked.append([int(i) for i in order[: k + 1] if i != excluded][:k])
        return ranked

    def _similarity_index(self):
        if self._index is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vectorizer = TfidfVectorizer(analyzer="char", ngram_range=NGRAM_RANGE, lowercase=False)
            matrix = vectorizer.fit_transform([ex.text for ex in self.examples])
            self._index = (vectorizer, matrix)
        return self._index


def few_shot_messages(
    prompt: PromptTemplate,
    text: str,
    answer_format: str,
    shots: Sequence[Example],
    max_prompt_tokens: int | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[dict]:
    """The conversation for ``text`` with ``shots`` (conversation order); with ``max_prompt_tokens``
    the first shots (the lowest ranked) are dropped until ``count_tokens`` says it fits, down to none."""
    shots = list(shots)
    messages = prompt.messages(text, answer_format, shots)
    if max_prompt_tokens is None or count_tokens is None:
        return messages
    while shots and count_tokens(messages) > max_prompt_tokens:
        shots.pop(0)
        messages = prompt.messages(text, answer_format, shots)
    return messages


def prompt_token_counter(tokenizer: Any | None) -> TokenCounter:
    """Tokens of a conversation's prompt: exact with a local model's ``tokenizer`` (its chat template,
    generation prompt included); without one (a server's model), the UTF-8 bytes of every message plus
    `TEMPLATE_TOKENS_PER_MESSAGE` each: a byte-level BPE tokenizer (Qwen, Llama 3, GPT) never makes more
    tokens than bytes, so the prompt fits whatever the server's tokenizer counts, though Chinese
    characters count 3 each (a template that adds a default system prompt of its own may exceed it)."""
    if tokenizer is not None:
        from .generation import chat_prompt_ids

        return lambda messages: len(chat_prompt_ids(tokenizer, messages))

    def upper_bound(messages: list[dict]) -> int:
        size = sum(len(m["content"].encode("utf-8", "surrogatepass")) for m in messages)
        return size + TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1)  # + 1: the answer's own header

    return upper_bound
