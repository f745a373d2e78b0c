"""Parsing: from an assistant answer back to exact character spans of the source text.

`parse_answer` reads the JSON of either answer format (never with ``eval``; it never raises)
and `align_spans` places each mention in the text:

- ``mentions`` (a list in reading order): a left-to-right cursor, so the k-th repeat of a
  string maps to its k-th occurrence;
- ``grouped`` (``{label: [strings]}``): every occurrence of every string, longest first,
  overlaps rejected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields

from .data import Span
from .prompting import LabelSchema

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


@dataclass
class ParseStats:
    """Counters of what parsing saw; add them up over a corpus with ``+=``."""

    answers: int = 0
    parse_failures: int = 0  # no JSON answer could be read
    mentions: int = 0  # mentions read from the answers
    aligned: int = 0  # mentions placed in the text
    hallucinated: int = 0  # entity strings not found in the text
    duplicates: int = 0  # more repeats of a string than the text has occurrences
    unknown_label: int = 0  # labels outside the schema
    invalid_items: int = 0  # items of the wrong shape (not text/label pairs)
    repaired: int = 0  # answers read only after cleaning (fences, think blocks, prose)

    def __iadd__(self, other: ParseStats) -> ParseStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _first_json_value(answer: str) -> tuple[object, bool]:
    """The first JSON array or object in the answer and whether cleaning was needed."""
    stripped = answer.strip()
    try:
        return json.loads(stripped), False
    except ValueError:
        pass
    cleaned = _THINK.sub("", stripped)
    if "<think>" in cleaned:  # an unterminated think block holds no answer
        cleaned = cleaned.split("<think>", 1)[0]
    fence = _FENCE.search(cleaned)
    if fence:
        cleaned = fence.group(1)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", cleaned):
        try:
            value, _ = decoder.raw_decode(cleaned, match.start())
        except ValueError:
            continue
        return value, True
    raise ValueError("no JSON array or object in the answer")


def parse_answer(
    answer: str, schema: LabelSchema | None = None
) -> tuple[list[tuple[str, str]], str, ParseStats]:
    """Read ``(entity text, label)`` pairs from an answer of either format.

    Returns the pairs, the format found (``mentions`` for a list, ``grouped`` for an object,
    ``none`` when unreadable) and the counters. Labels are mapped to schema keys (Chinese
    names and aliases accepted); pairs with unknown labels are dropped and counted.
    """
    stats = ParseStats(answers=1)
    try:
        value, repaired = _first_json_value(answer if isinstance(answer, str) else "")
    except ValueError:
        stats.parse_failures = 1
        return [], "none", stats
    stats.repaired = int(repaired)
    lookup = schema.lookup() if schema is not None else None
    pairs: list[tuple[str, str]] = []

    def add(text: object, label: object) -> None:
        if not isinstance(text, str) or not isinstance(label, str) or not text:
            stats.invalid_items += 1
            return
        stats.mentions += 1
        if lookup is not None:
            key = lookup.get(label.strip().casefold())
            if key is None:
                stats.unknown_label += 1
                return
            label = key
        pairs.append((text, label))

    if isinstance(value, list):
        found = "mentions"
        for item in value:
            if isinstance(item, dict):
                add(item.get("text"), item.get("label"))
            else:
                stats.invalid_items += 1
    elif isinstance(value, dict):
        found = "grouped"
        for label, strings in value.items():
            if isinstance(strings, str):
                strings = [strings]
            if not isinstance(strings, list):
                stats.invalid_items += 1
                continue
            for text in strings:
                add(text, label)
    else:
        stats.parse_failures = 1
        return [], "none", stats
    return pairs, found, stats


def _next_free(text: str, mention: str, label: str, origin: int, taken: set[Span]) -> int:
    position = text.find(mention, origin)
    while position >= 0 and Span(position, position + len(mention), label) in taken:
        position = text.find(mention, position + 1)
    return position


def align_mentions(text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None) -> list[Span]:
    """Place mentions listed in reading order with a left-to-right cursor.

    Each mention takes its next occurrence after the previous mention; failing that (nested
    or out-of-order mentions) the first occurrence not already taken with the same label.
    """
    stats = stats if stats is not None else ParseStats()
    spans: set[Span] = set()
    prev_start = prev_end = 0
    for mention, label in mentions:
        position = -1
        for origin in (prev_end, prev_start, 0):
            position = _next_free(text, mention, label, origin, spans)
            if position >= 0:
                break
        if position < 0:
            if mention in text:
                stats.duplicates += 1
            else:
                stats.hallucinated += 1
            continue
        span = Span(position, position + len(mention), label)
        spans.add(span)
        stats.aligned += 1
        prev_start, prev_end = span.start, span.end
    return sorted(spans)


def align_grouped(text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None) -> list[Span]:
    """Place ``label -> strings`` answers: all occurrences, longest first, no overlaps."""
    stats = stats if stats is not None else ParseStats()
    candidates: list[Span] = []
    seen: set[tuple[str, str]] = set()
    for mention, label in mentions:
        if (mention, label) in seen:
            stats.duplicates += 1
            continue
        seen.add((mention, label))
        position = text.find(mention)
        if position < 0:
            stats.hallucinated += 1
            continue
        stats.aligned += 1
        while position >= 0:
            candidates.append(Span(position, position + len(mention), label))
            position = text.find(mention, position + 1)
    chosen: list[Span] = []
    for span in sorted(candidates, key=lambda s: (s.start - s.end, s.start)):
        if not any(span.overlaps(other) for other in chosen):
            chosen.append(span)
    return sorted(chosen)


def align_spans(
    text: str, mentions: list[tuple[str, str]], answer_format: str, stats: ParseStats | None = None
) -> list[Span]:
    """Spans of ``text`` for parsed mentions of the given format (``mentions``/``grouped``)."""
    if answer_format == "grouped":
        return align_grouped(text, mentions, stats)
    return align_mentions(text, mentions, stats)


def answer_to_spans(
    text: str, answer: str, schema: LabelSchema | None = None
) -> tuple[list[Span], ParseStats]:
    """Parse an answer of either format and align it to ``text``; never raises."""
    mentions, found, stats = parse_answer(answer, schema)
    return align_spans(text, mentions, found, stats), stats
