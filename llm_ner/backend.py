"""Who answers the prompts: the `Backend` protocol, and `LocalBackend`, a model in this process.

`extraction.extract` and `serve.Engine` turn texts into conversations (the run's prompt and answer
format), hand them to a backend and parse what comes back with the same parser and aligner, so
answers from a local model and from a server (`openai_backend.OpenAIBackend`) become the same
records. This module imports torch only when a local model answers: the CLI imports it (through
`extraction`) while it builds its parser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# (the answer characters of each token, or None where the tokens do not spell the answer; their
# log-probabilities): what `extraction.make_record` turns into entity and answer scores.
TokenScores = tuple[list[tuple[int, int]] | None, list[float]]
Answer = tuple[str, TokenScores | None]


class Backend(Protocol):
    """Answers a batch of conversations."""

    def answer(self, conversations: Sequence[list[dict]], texts: Sequence[str]) -> list[Answer]:
        """(answer text, token scores or None) for each conversation, in order; ``texts[i]`` is the
        sentence asked about in ``conversations[i]`` (it bounds the answer length)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (threads, connections) once a run is over."""
        ...


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
        from .generation import load_model

        loaded, tokenizer = load_model(model, adapter, dtype=dtype, device=device, load_in_4bit=load_in_4bit)
        constraint = None
        if constrained_labels is not None:
            from .constrained import MentionsConstraint

            constraint = MentionsConstraint.for_tokenizer(tokenizer, constrained_labels)
        return cls(loaded, tokenizer, constraint, **settings)

    def answer(self, conversations: Sequence[list[dict]], texts: Sequence[str]) -> list[Answer]:
        """See `Backend.answer`."""
        from .generation import generate_answers, token_char_ranges

        token_logprobs: list | None = [] if self.token_scores else None
        answers = generate_answers(
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
            return [(text, None) for text in answers]
        return [
            (text, (token_char_ranges(self.tokenizer, ids, text), logprobs))
            for text, (ids, logprobs) in zip(answers, token_logprobs)
        ]

    def close(self) -> None:
        """Nothing to release: the model belongs to the process."""
