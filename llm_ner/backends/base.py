"""The `Answer` a backend returns and the `Backend` protocol (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Answer:
    """One generated answer: its ``text`` and, where the backend recorded them, the ``logprobs`` of its tokens as
    chosen and the ``char_ranges`` of ``text`` each token spelled (None where the tokens do not spell it)."""

    text: str
    char_ranges: tuple[tuple[int, int], ...] | None = None
    logprobs: tuple[float, ...] | None = None

    @property
    def scored(self) -> bool:
        """Whether the backend recorded token log-probabilities (the entity and answer scores need them)."""
        return self.logprobs is not None


class Backend(Protocol):
    """Answers a batch of conversations."""

    def answer(self, conversations: Sequence[list[dict]], texts: Sequence[str]) -> list[Answer]:
        """One `Answer` per conversation, in order; ``texts[i]`` is the sentence asked about in
        ``conversations[i]`` (it bounds the answer length)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (threads, connections) once a run is over."""
        ...
