"""`LocalBackend`: greedy answers of a model loaded in this process (torch is imported with the model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Answer


@dataclass
class LocalBackend:
    """Greedy answers of a model loaded in this process, in generate batches of ``batch_size`` rows
    (None: all texts of a call at once), with each answer token's log-probability if ``token_scores``."""

    model: Any
    tokenizer: Any
    constraint: Callable | None = None  # a logits-processor factory: constrained decoding
    batch_size: int | None = None
    max_new_tokens: int | None = None  # None: from the length of each batch's texts
    token_scores: bool = True

    @classmethod
    def load(
        cls,
        model: str,
        adapter: str | None = None,
        *,
        dtype: str = "auto",
        device: str | None = None,
        load_in_4bit: bool = False,
        constrained_labels: Sequence[str] | None = None,
        **settings: Any,
    ) -> LocalBackend:
        """Load ``model`` (and the LoRA ``adapter``); ``constrained_labels``: decode under the mentions
        constraint with these labels. ``settings``: the other fields (batch_size, max_new_tokens, ...)."""
        from ..generation import load_model

        loaded, tokenizer = load_model(model, adapter, dtype=dtype, device=device, load_in_4bit=load_in_4bit)
        constraint = None
        if constrained_labels is not None:
            from ..generation.constrained import MentionsConstraint

            constraint = MentionsConstraint.for_tokenizer(tokenizer, constrained_labels)
        return cls(loaded, tokenizer, constraint, **settings)

    def answer(self, conversations: Sequence[list[dict]], texts: Sequence[str]) -> list[Answer]:
        """See `Backend.answer`."""
        from .. import generation  # looked up at call time: tests replace generation.generate_answers

        token_logprobs: list | None = [] if self.token_scores else None
        answers = generation.generate_answers(
            self.model,
            self.tokenizer,
            list(conversations),
            texts=list(texts),
            batch_size=self.batch_size or len(texts),
            max_new_tokens=self.max_new_tokens,
            logits_processor_factory=self.constraint,
            token_logprobs=token_logprobs,
        )
        if not token_logprobs:  # an engine that records no token scores leaves the list empty
            return [Answer(text) for text in answers]
        answered = []
        for text, (ids, logprobs) in zip(answers, token_logprobs):
            ranges = generation.token_char_ranges(self.tokenizer, ids, text)
            answered.append(Answer(text, None if ranges is None else tuple(ranges), tuple(logprobs)))
        return answered

    def close(self) -> None:
        """Nothing to release: the model belongs to the process."""
