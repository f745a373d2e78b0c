"""Parsing machinery shared by the answer formats: from an assistant answer to exact spans.

The answer formats (`answer_format`) decide what an answer's items mean and how its strings are
placed; this module holds what they share:

- `first_json_value` finds the JSON in an answer (fences, ``<think>`` blocks, prose around it,
  truncation: the lenient reader of `lenient_json`; never ``eval``);
- `MentionCollector` takes ``(entity text, label)`` pairs, maps labels to schema keys and counts
  what it had to drop in `ParseStats`;
- `align_mentions` (a left-to-right cursor: the k-th repeat of a string maps to its k-th
  occurrence) and `align_grouped` (every occurrence, longest first, overlaps rejected) place
  strings in the text, exactly or after folding width, case and spaces.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, fields

from .data import Span
from .labels import LabelSchema
from .lenient_json import loads_lenient

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)(?:```|$)", re.DOTALL)


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
    repaired: int = 0  # answers read only after repair (fences, think blocks, prose, quotes, truncation)
    normalized: int = 0  # mentions found only after width/case/space normalization

    def __iadd__(self, other: ParseStats) -> ParseStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def strip_wrappers(answer: str) -> str:
    """The answer without ``<think>`` blocks (an unterminated one holds no answer) and code fences."""
    cleaned = _THINK.sub("", answer)
    if "<think>" in cleaned:
        cleaned = cleaned.split("<think>", 1)[0]
    cleaned = cleaned.replace("</think>", "")
    fence = _FENCE.search(cleaned)
    if fence and fence.group(1).strip():
        cleaned = fence.group(1)
    return cleaned


def first_json_value(answer: str) -> tuple[object, bool]:
    """The first JSON-like array or object in the answer and whether repair was needed; ValueError when
    there is none."""
    stripped = answer.strip()
    try:
        value = json.loads(stripped)
        if isinstance(value, (list, dict)):
            return value, False
    except ValueError:
        pass
    cleaned = strip_wrappers(stripped)
    for match in re.finditer(r"[\[{]", cleaned):
        try:
            value, _, _ = loads_lenient(cleaned, match.start())
        except ValueError:
            continue
        return value, True
    raise ValueError("no JSON array or object in the answer")


def pick(item: dict, keys: tuple[str, ...]) -> object:
    """The value of the first of ``keys`` in ``item`` (exact, then case- and space-folded); None if none."""
    for key in keys:
        if key in item:
            return item[key]
    folded = {str(k).strip().casefold(): v for k, v in item.items()}
    for key in keys:
        if key in folded:
            return folded[key]
    return None


class MentionCollector:
    """The ``(entity text, label)`` pairs read from one answer, labels mapped to schema keys (Chinese
    names and aliases accepted); items of the wrong shape and unknown labels are counted in ``stats``."""

    def __init__(self, stats: ParseStats, schema: LabelSchema | None = None):
        self.stats = stats
        self.lookup = schema.lookup() if schema is not None else None
        self.pairs: list[tuple[str, str]] = []

    def add(self, text: object, label: object) -> None:
        """One item: kept when both are strings, the text is not blank and the label is in the schema."""
        if not isinstance(text, str) or not isinstance(label, str) or not text.strip():
            self.stats.invalid_items += 1
            return
        self.stats.mentions += 1
        if self.lookup is not None:
            key = self.lookup.get(label.strip().casefold())
            if key is None:
                self.stats.unknown_label += 1
                return
            label = key
        self.pairs.append((text, label))

    def invalid(self) -> None:
        """An item that is not a text/label pair."""
        self.stats.invalid_items += 1


# ---------------------------------------------------------------------------------------------
# Alignment


def _normalize(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if not c.isspace())


class _NormalizedText:
    """The text with Unicode forms (NFKC: composed accents, full-width forms), case and spaces
    folded, mapped back to original offsets. A character and the combining marks after it fold
    together, so a decomposed "e\u0301" matches the composed "é" a tokenizer's NFC gives back."""

    def __init__(self, text: str):
        chars, origin, ends = [], [], []
        start = 0
        while start < len(text):
            end = start + 1
            while end < len(text) and unicodedata.combining(text[end]):
                end += 1
            for folded in _normalize(text[start:end]):
                chars.append(folded)
                origin.append(start)
                ends.append(end)
            start = end
        self.text = "".join(chars)
        self.origin = origin
        self.ends = ends

    def occurrences(self, mention: str):
        needle = _normalize(mention)
        if not needle:
            return
        position = self.text.find(needle)
        while position >= 0:
            yield self.origin[position], self.ends[position + len(needle) - 1]
            position = self.text.find(needle, position + 1)


def _exact_occurrences(text: str, mention: str):
    position = text.find(mention)
    while position >= 0:
        yield position, position + len(mention)
        position = text.find(mention, position + 1)


def align_mentions(
    text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None, placed: list | None = None
) -> list[Span]:
    """Place mentions listed in reading order with a left-to-right cursor.

    Each mention takes its next occurrence after the previous mention; failing that (nested
    or out-of-order mentions) the first occurrence not already taken with the same label.
    Strings found only after folding full-width forms, case and spaces are counted as
    ``normalized``. ``placed`` (a list) receives ``(index of the mention, span)`` of each placed one.
    """
    stats = stats if stats is not None else ParseStats()
    spans: set[Span] = set()
    prev_start = prev_end = 0
    normalized: _NormalizedText | None = None
    for index, (mention, label) in enumerate(mentions):
        places = list(_exact_occurrences(text, mention))
        folded = False
        if not places:
            normalized = normalized or _NormalizedText(text)
            places = list(normalized.occurrences(mention))
            folded = bool(places)
        free = [(s, e) for s, e in places if Span(s, e, label) not in spans]
        choice = next((p for p in free if p[0] >= prev_end), None)
        choice = choice or next((p for p in free if p[0] >= prev_start), None)
        choice = choice or (free[0] if free else None)
        if choice is None:
            if places:
                stats.duplicates += 1
            else:
                stats.hallucinated += 1
            continue
        span = Span(choice[0], choice[1], label)
        spans.add(span)
        if placed is not None:
            placed.append((index, span))
        stats.aligned += 1
        stats.normalized += int(folded)
        prev_start, prev_end = span.start, span.end
    return sorted(spans)


def align_grouped(
    text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None, placed: list | None = None
) -> list[Span]:
    """Place ``label -> strings`` answers: all occurrences, longest first, no overlaps.

    ``placed`` (a list) receives ``(index of the mention, span)`` of each placed span."""
    stats = stats if stats is not None else ParseStats()
    candidates: list[tuple[Span, int]] = []
    seen: set[tuple[str, str]] = set()
    normalized: _NormalizedText | None = None
    for index, (mention, label) in enumerate(mentions):
        if (mention, label) in seen:
            stats.duplicates += 1
            continue
        seen.add((mention, label))
        places = list(_exact_occurrences(text, mention))
        if not places:
            normalized = normalized or _NormalizedText(text)
            places = list(normalized.occurrences(mention))
            stats.normalized += int(bool(places))
        if not places:
            stats.hallucinated += 1
            continue
        stats.aligned += 1
        candidates.extend((Span(s, e, label), index) for s, e in places)
    chosen: list[Span] = []
    for span, index in sorted(candidates, key=lambda c: (c[0].start - c[0].end, c[0].start)):
        if not any(span.overlaps(other) for other in chosen):
            chosen.append(span)
            if placed is not None:
                placed.append((index, span))
    return sorted(chosen)
