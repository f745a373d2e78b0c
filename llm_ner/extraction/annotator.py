"""The annotator: texts in, records out, the one path every engine takes (LangExtract's `annotation.Annotator`).

Cut long texts into pieces at punctuation (`data.split_long`), build each piece's conversation (the run's prompt,
answer format and shots), ask a `Backend`, and join the answers of a text's pieces into one record: the spans
aligned to exact character offsets, entity and answer scores where the backend recorded token log-probabilities,
the raw answers and the parse counters. `extract` (local and on Ray), `serve` and the Label Studio backend all
call it, and it is the public Python API (`llm_ner.load`):

    ner = llm_ner.load("runs/qwen3-lora")            # a run directory, a merged model, or base_url= for a server
    ner(["浙商银行企业信贷部叶老桂博士", "..."])       # [[Entity(start=0, end=4, label='company', ...)], ...]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..answer_format import answer_to_scored_spans, answer_to_spans
from ..backends import Answer, Backend
from ..confidence import record_scores, scores_field
from ..data import Example, Span, example_to_cluener, split_long
from ..parsing import ParseStats
from ..prompting import PromptTemplate
from ..shots import ShotCounts, prompt_token_counter
from .options import ModelOptions
from .settings import RunSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entity:
    """One entity of a text: ``text[start:end]`` (end exclusive, in characters) of type ``label``, with its
    ``score`` (0-1) where the backend recorded token log-probabilities."""

    start: int
    end: int
    label: str
    text: str
    score: float | None = None

    def as_dict(self) -> dict:
        """The JSON of `llm-ner serve`: ``score`` only where there is one."""
        fields = asdict(self)
        if fields["score"] is None:
            del fields["score"]
        return fields


def record_entities(record: dict) -> list[Entity]:
    """A CLUENER record's spans as entities (end exclusive) in reading order, scored where it has ``scores``."""
    scores = record_scores(record)
    entities = [
        Entity(start, end + 1, label, mention, scores.get(Span(start, end + 1, label)))
        for label, mentions in record["label"].items()
        for mention, ranges in mentions.items()
        for start, end in ranges
    ]
    return sorted(entities, key=lambda e: (e.start, e.end, e.label))


def make_record(
    example: Example, pieces: Sequence[tuple[int, str]], answers: Sequence[Answer], prompt: PromptTemplate
) -> tuple[dict, ParseStats]:
    """The output record of one sentence from the answers of its pieces (``pieces[k]`` = (offset, text)).

    When every answer carries token log-probabilities, the record gets the entity ``scores`` and the
    ``answer_score`` (see `llm_ner.confidence`).
    """
    scored = all(answer.scored for answer in answers)
    stats = ParseStats()
    spans: set[Span] = set()
    scores: dict[Span, float] = {}
    for (offset, piece), answer in zip(pieces, answers):
        if scored:
            piece_spans, piece_stats, piece_scores = answer_to_scored_spans(
                piece, answer.text, answer.char_ranges, answer.logprobs, prompt.schema
            )
            scores.update({Span(s.start + offset, s.end + offset, s.label): v for s, v in piece_scores.items()})
        else:
            piece_spans, piece_stats = answer_to_spans(piece, answer.text, prompt.schema)
        stats += piece_stats
        spans.update(Span(s.start + offset, s.end + offset, s.label) for s in piece_spans)
    predicted = Example(example.id, example.text, sorted(spans))
    record = example_to_cluener(predicted)
    if scored:
        record["scores"] = scores_field(predicted, scores)
        logprobs = [value for answer in answers for value in answer.logprobs]
        record["answer_score"] = round(math.exp(sum(logprobs) / len(logprobs)), 6) if logprobs else None
    record["raw"] = answers[0].text if len(answers) == 1 else [answer.text for answer in answers]
    record["parse"] = {k: v for k, v in stats.as_dict().items() if v}
    return record, stats


class Annotator:
    """Texts in, records out: ``settings`` (prompt, answer format, shots) asked of ``backend``, texts longer than
    ``max_chars`` cut into pieces whose answers are joined back. Call it with texts for their entities, or use
    its steps (`pieces`, `answer`, `record`) where an engine batches pieces of many texts itself.

    With shots, ``shot_counts`` counts what the prompts got (`shots.ShotCounts`); a budget below the zero-shot
    prompt is a `UsageError` here, before anything is generated, and the first prompt sent over the budget a
    warning (once: ``warn_over_budget=False`` leaves it to the caller, as `extract` reports at its end)."""

    def __init__(
        self,
        backend: Backend | None,
        settings: RunSettings,
        max_chars: int = ModelOptions.max_chars,
        warn_over_budget: bool = True,
    ):
        self.backend, self.settings, self.max_chars = backend, settings, max_chars
        self.shot_counts = ShotCounts()
        self._warn_over_budget = warn_over_budget
        self._count_tokens = None
        if backend is not None and settings.max_prompt_tokens is not None:
            tokenizer = getattr(backend, "tokenizer", None)
            settings.check_prompt_budget(tokenizer)
            self._count_tokens = prompt_token_counter(tokenizer)

    def pieces(self, text: str) -> list[tuple[int, str]]:
        """(offset, piece) of a text: itself, or its cuts at punctuation when longer than ``max_chars``."""
        return split_long(text, self.max_chars)

    def answer(self, texts: Sequence[str], sources: Sequence[str] | None = None) -> list[Answer]:
        """The backend's answer to each text (a sentence or a piece cut from the record ``sources[i]``: no shot
        shows it its answer), asked in the run's prompt and answer format with its shots; a prompt budget is
        counted with the backend's tokenizer if it has one, else bounded."""
        over_before = self.shot_counts.over_budget
        conversations = self.settings.conversations(texts, self._count_tokens, sources, self.shot_counts)
        if self._warn_over_budget and not over_before and self.shot_counts.over_budget:
            log.warning(
                "%d of %d prompts over --max-prompt-tokens %d even with no shots: sent as they are (a lower "
                "--max-chars cuts long sentences shorter); warned once, `shot_counts` counts the rest",
                self.shot_counts.over_budget,
                len(texts),
                self.settings.max_prompt_tokens,
            )
        return self.backend.answer(conversations, list(texts))

    def record(self, example: Example, answers: Sequence[Answer]) -> tuple[dict, ParseStats]:
        """The record of ``example`` from the answers of its `pieces`, in order."""
        return make_record(example, self.pieces(example.text), answers, self.settings.prompt)

    def annotate(self, examples: Sequence[Example]) -> list[tuple[dict, ParseStats]]:
        """Records of ``examples``: every piece of every text in one backend call (a `LocalBackend` generates in
        batches of its ``batch_size`` rows, so a batch of long texts keeps memory bounded)."""
        pieces = [self.pieces(example.text) for example in examples]
        sources = [example.text for example, parts in zip(examples, pieces) for _ in parts]
        answers = self.answer([piece for parts in pieces for _, piece in parts], sources)
        results, cursor = [], 0
        for example, parts in zip(examples, pieces):
            results.append(make_record(example, parts, answers[cursor : cursor + len(parts)], self.settings.prompt))
            cursor += len(parts)
        return results

    def __call__(self, texts: str | Sequence[str]) -> list[Entity] | list[list[Entity]]:
        """The entities of one text, or of each of ``texts`` (a list per text, in order)."""
        single = isinstance(texts, str)
        examples = [Example(str(i), text) for i, text in enumerate([texts] if single else texts)]
        entities = [record_entities(record) for record, _ in self.annotate(examples)]
        return entities[0] if single else entities

    def close(self) -> None:
        """Release what the backend holds (threads, connections)."""
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> Annotator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
