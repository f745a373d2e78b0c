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

A shot that would show the model its own answer is never used (`shows_own_gold`): one that equals the
text asked about, contains it or is contained in it, or is part of the record that text was cut from
(``--max-chars`` cuts long sentences into pieces: each piece is asked with its source record's text).
So a run over the shots file itself never sees its answers. Sentences repeated in the file are kept once
(the first).

`select` returns the shots in conversation order: the lowest ranked first, the best ranked (the
most similar) last, nearest the question. `few_shot_messages` renders them as user/assistant turns
(`prompting.PromptTemplate.messages`) and, under a token budget, drops shots from the front (the
lowest ranked) until the prompt fits; a prompt over the budget even without shots (a long sentence) is
sent as it is and counted (`ShotCounts`), and a budget below the zero-shot prompt itself is refused
before anything runs (`check_prompt_budget`). `prompt_token_counter` counts a prompt's tokens with a
local model's tokenizer, or bounds them from above where there is none (a server's model).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Example, load_examples
from .errors import DataError, UsageError
from .prompting import PromptTemplate

SHOT_SELECTIONS = ("similar", "random", "fixed")
NGRAM_RANGE = (1, 2)  # character unigrams and bigrams: see the module docstring
# Tokens a chat template adds around each message (Qwen: "<|im_start|>role\n" ... "<|im_end|>\n" is 5).
TEMPLATE_TOKENS_PER_MESSAGE = 16

TokenCounter = Callable[[list[dict]], int]


def shows_own_gold(shot: str, query: str, source: str | None = None) -> bool:
    """Whether a shot of text ``shot`` would show the model the answer to ``query``, a text or a piece cut
    from the record ``source`` (default: ``query`` itself): the shot contains ``query`` (equal texts
    included), or is a part of ``source`` (so of the same record: a piece of it, or ``query`` contains it).
    Texts, not ids, tell records apart: ids of different files collide (CLUENER numbers its lines)."""
    return query in shot or shot in (query if source is None else source)


@dataclass
class ShotPool:
    """Labelled sentences to draw shots from, with the rule that picks them (``selection``, ``seed``)."""

    examples: list[Example]
    selection: str = "similar"
    seed: int = 0
    source: str = ""  # the file, for messages
    _index: Any = field(default=None, repr=False)  # (vectorizer, matrix) of `similar`, built on first use

    def __post_init__(self) -> None:
        if self.selection not in SHOT_SELECTIONS:
            raise ValueError(f"shot selection must be one of {', '.join(SHOT_SELECTIONS)}, got {self.selection!r}")
        first: dict[str, Example] = {}  # dicts keep insertion order: the file's
        for example in self.examples:
            first.setdefault(example.text, example)
        self.examples = list(first.values())

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

    def select(self, text: str, k: int, source: str | None = None) -> list[Example]:
        """The ``k`` shots for ``text`` (cut from the record ``source``, default itself) in conversation order
        (best ranked last); fewer if the pool has fewer that do not show ``text`` its answer (`shows_own_gold`)."""
        return self.select_many([text], k, None if source is None else [source])[0]

    def select_many(self, texts: Sequence[str], k: int, sources: Sequence[str] | None = None) -> list[list[Example]]:
        """`select` for each of ``texts`` (``sources``: the record each was cut from; one similarity product
        for all of them)."""
        if k <= 0:
            return [[] for _ in texts]
        sources = texts if sources is None else sources
        if len(sources) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(sources)} sources")
        if self.selection == "similar":
            candidates: Iterable[Iterable[int]] = self._most_similar(texts)
        elif self.selection == "random":
            candidates = (self._drawn(text, k) for text in texts)
        else:
            candidates = (range(len(self.examples)) for _ in texts)
        ranked = [self._allowed(order, text, source, k) for order, text, source in zip(candidates, texts, sources)]
        return [[self.examples[i] for i in reversed(order)] for order in ranked]

    def _allowed(self, order: Iterable[int], text: str, source: str, k: int) -> list[int]:
        """The first ``k`` of ``order`` (pool indices, best first) that do not show ``text`` its answer."""
        chosen: list[int] = []
        for i in order:
            if not shows_own_gold(self.examples[i].text, text, source):
                chosen.append(i)
                if len(chosen) == k:
                    break
        return chosen

    def _drawn(self, text: str, k: int) -> Iterable[int]:
        # A stable hash (not Python's salted hash()): the same text draws the same shots in every process.
        digest = hashlib.sha256(f"{self.seed}\n{text}".encode("utf-8", "surrogatepass")).digest()
        generator = random.Random(int.from_bytes(digest[:8], "big"))
        # K + 1 first (one excluded shot, the sentence itself, still leaves K: the draws of earlier runs), and
        # only when more are excluded, the rest of the pool in an order drawn by the same generator.
        drawn = generator.sample(range(len(self.examples)), min(k + 1, len(self.examples)))
        yield from drawn
        if len(drawn) < len(self.examples):
            seen = set(drawn)
            yield from (i for i in generator.sample(range(len(self.examples)), len(self.examples)) if i not in seen)

    def _most_similar(self, texts: Sequence[str]) -> list[Iterable[int]]:
        import numpy as np

        vectorizer, matrix = self._similarity_index()
        # Rows are L2-normalised by TfidfVectorizer: the dot product is the cosine.
        scores = (vectorizer.transform(list(texts)) @ matrix.T).toarray()
        # stable: equal scores keep file order
        return [(int(i) for i in np.argsort(-row, kind="stable")) for row in np.round(scores, 12)]

    def _similarity_index(self):
        if self._index is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vectorizer = TfidfVectorizer(analyzer="char", ngram_range=NGRAM_RANGE, lowercase=False)
            matrix = vectorizer.fit_transform([ex.text for ex in self.examples])
            self._index = (vectorizer, matrix)
        return self._index


@dataclass
class ShotCounts:
    """The shots a run's prompts actually got: how many prompts had how many shots, how many lost shots to the
    budget, and how many were over the budget even with none (a long sentence is sent as it is)."""

    prompts_with: Counter = field(default_factory=Counter)  # shots in a prompt -> prompts
    trimmed: int = 0  # prompts that lost shots to --max-prompt-tokens
    over_budget: int = 0  # prompts over --max-prompt-tokens with no shots left

    @property
    def prompts(self) -> int:
        return sum(self.prompts_with.values())

    def line(self, asked: int, pool: int, budget: int | None = None) -> str:
        """One line for a run's end: the shots used against those asked (``asked``, a ``pool`` of sentences)."""
        used = sum(n * prompts for n, prompts in self.prompts_with.items())
        spread = f"{min(self.prompts_with)}-{max(self.prompts_with)}" if self.prompts_with else "0"
        parts = [f"shots used: {used} in {self.prompts} prompts, {spread} a prompt (--shots {asked}, pool {pool})"]
        if self.trimmed:
            parts.append(f"{self.trimmed} prompts with fewer shots to fit --max-prompt-tokens {budget}")
        if self.over_budget:
            parts.append(
                f"{self.over_budget} prompts over --max-prompt-tokens {budget} even with no shots, sent as they are "
                "(a lower --max-chars cuts long sentences shorter)"
            )
        return "; ".join(parts)


def few_shot_messages(
    prompt: PromptTemplate,
    text: str,
    answer_format: str,
    shots: Sequence[Example],
    max_prompt_tokens: int | None = None,
    count_tokens: TokenCounter | None = None,
    counts: ShotCounts | None = None,
) -> list[dict]:
    """The conversation for ``text`` with ``shots`` (conversation order); with ``max_prompt_tokens``
    the first shots (the lowest ranked) are dropped until ``count_tokens`` says it fits, down to none
    (then it is sent over the budget). ``counts``, if given, records what this prompt got."""
    kept = list(shots)
    messages = prompt.messages(text, answer_format, kept)
    over = False
    if max_prompt_tokens is not None and count_tokens is not None:
        size = count_tokens(messages)
        while kept and size > max_prompt_tokens:
            kept.pop(0)
            messages = prompt.messages(text, answer_format, kept)
            size = count_tokens(messages)
        over = size > max_prompt_tokens
    if counts is not None:
        counts.prompts_with[len(kept)] += 1
        counts.trimmed += len(kept) < len(shots)
        counts.over_budget += over
    return messages


def check_prompt_budget(
    prompt: PromptTemplate, answer_format: str, max_prompt_tokens: int, count_tokens: TokenCounter, exact: bool
) -> None:
    """`UsageError` when ``max_prompt_tokens`` is below the zero-shot prompt of an empty sentence: no prompt
    could fit it, and dropping every shot would send each one over it in silence. ``exact``: counted with the
    model's tokenizer (else bounded, see `prompt_token_counter`)."""
    floor = count_tokens(prompt.messages("", answer_format))
    if max_prompt_tokens < floor:
        counted = "" if exact else " as bounded without the model's tokenizer (UTF-8 bytes + 16 a message)"
        raise UsageError(
            f"--max-prompt-tokens {max_prompt_tokens} is below the zero-shot prompt of prompt {prompt.name}: "
            f"{floor} tokens{counted} before any sentence or shot; give at least {floor} plus room for sentences "
            "and shots, or leave it out"
        )


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
