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
import unicodedata
from dataclasses import dataclass, fields

from .data import Span
from .lenient_json import loads_lenient
from .prompting import LabelSchema

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)(?:```|$)", re.DOTALL)

# Keys models use for the entity string and its type inside a mention object.
TEXT_KEYS = ("text", "entity", "mention", "span", "word", "name", "value", "实体", "实体名", "文本")
LABEL_KEYS = ("label", "type", "category", "entity_type", "tag", "class", "类型", "标签", "类别", "实体类型")
WRAPPER_KEYS = ("entities", "entity_list", "result", "results", "output", "answer", "实体", "结果")


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


def _first_json_value(answer: str) -> tuple[object, bool]:
    """The first JSON-like array or object in the answer and whether repair was needed."""
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


def _pick(item: dict, keys: tuple[str, ...]) -> object:
    for key in keys:
        if key in item:
            return item[key]
    folded = {str(k).strip().casefold(): v for k, v in item.items()}
    for key in keys:
        if key in folded:
            return folded[key]
    return None


def parse_answer(answer: str, schema: LabelSchema | None = None) -> tuple[list[tuple[str, str]], str, ParseStats]:
    """Read ``(entity text, label)`` pairs from an answer of either format; never raises.

    Returns the pairs, the format found (``mentions`` for a list, ``grouped`` for an object,
    ``none`` when unreadable) and the counters. Labels are mapped to schema keys (Chinese
    names and aliases accepted); pairs with unknown labels are dropped and counted.
    """
    stats = ParseStats(answers=1)
    try:
        value, repaired = _first_json_value(answer if isinstance(answer, str) else "")
    except (ValueError, RecursionError):
        stats.parse_failures = 1
        return [], "none", stats
    stats.repaired = int(repaired)
    lookup = schema.lookup() if schema is not None else None
    pairs: list[tuple[str, str]] = []

    def add(text: object, label: object) -> None:
        if not isinstance(text, str) or not isinstance(label, str) or not text.strip():
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

    if isinstance(value, dict):
        wrapped = _pick(value, WRAPPER_KEYS)
        if isinstance(wrapped, list) and len(value) == 1:
            value = wrapped
            stats.repaired = 1
    if isinstance(value, list):
        found = "mentions"
        for item in value:
            if isinstance(item, dict):
                if _pick(item, TEXT_KEYS) is None and len(item) == 1:  # {"张三": "name"}
                    ((text, label),) = item.items()
                    add(text, label)
                else:
                    add(_pick(item, TEXT_KEYS), _pick(item, LABEL_KEYS))
            elif isinstance(item, list) and len(item) == 2:  # ["张三", "name"]
                add(item[0], item[1])
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


def align_spans(
    text: str,
    mentions: list[tuple[str, str]],
    answer_format: str,
    stats: ParseStats | None = None,
    placed: list | None = None,
) -> list[Span]:
    """Spans of ``text`` for parsed mentions of the given format (``mentions``/``grouped``);
    ``placed`` as in `align_mentions`."""
    if answer_format == "grouped":
        return align_grouped(text, mentions, stats, placed)
    return align_mentions(text, mentions, stats, placed)


def answer_to_spans(text: str, answer: str, schema: LabelSchema | None = None) -> tuple[list[Span], ParseStats]:
    """Parse an answer of either format and align it to ``text``; never raises."""
    mentions, found, stats = parse_answer(answer, schema)
    return align_spans(text, mentions, found, stats), stats


# ---------------------------------------------------------------------------------------------
# Confidence: the probability of each mention's tokens


_STRING = r'"((?:[^"\\]|\\.)*)"'
_VALUE_AFTER_KEY = re.compile(r":\s*" + _STRING)


def mention_char_ranges(answer: str, mentions: list[tuple[str, str]]) -> list[list[tuple[int, int]]]:
    """For each parsed mention, the answer characters of its entity string and of the label string that
    follows it (``{"text": ENTITY, "label": LABEL}``), found left to right; empty when not found."""
    found, cursor = [], 0
    for mention, _ in mentions:
        literal = json.dumps(mention, ensure_ascii=False)
        position = answer.find(literal, cursor)
        if position < 0 and answer.endswith(literal[:-1]):  # cut off inside its last entity: no closing quote
            position = len(answer) - len(literal) + 1
        if position < 0:
            found.append([])
            continue
        ranges = [(position + 1, position + len(literal) - 1)]
        cursor = position + len(literal)
        label = _VALUE_AFTER_KEY.search(answer, cursor)
        if label and answer[cursor : label.start()].strip(' ,\n"').lower() in LABEL_KEYS:
            ranges.append(label.span(1))
            cursor = label.end()
        found.append(ranges)
    return found


def answer_to_scored_spans(
    text: str,
    answer: str,
    token_ranges: list[tuple[int, int]] | None,
    logprobs: list[float],
    schema: LabelSchema | None = None,
) -> tuple[list[Span], ParseStats, dict[Span, float]]:
    """`answer_to_spans` plus each span's score: the product of the probabilities of the tokens that
    wrote its entity string and label (mentions answers; grouped answers: the entity string only).
    ``token_ranges[k]`` are the answer characters of token k (`generation.token_char_ranges`)."""
    import math

    mentions, found, stats = parse_answer(answer, schema)
    placed: list[tuple[int, Span]] = []  # grouped: one entity string can become several spans, each with its score
    spans = align_spans(text, mentions, found, stats, placed)
    if token_ranges is None:
        return spans, stats, {}
    char_ranges = mention_char_ranges(answer, mentions)
    scores = {}
    for index, span in placed:
        ranges = char_ranges[index]
        if not ranges:
            continue
        tokens = [
            k for k, (a, b) in enumerate(token_ranges) if b > a and any(a < end and start < b for start, end in ranges)
        ]
        if tokens:
            scores[span] = math.exp(sum(logprobs[k] for k in tokens if k < len(logprobs)))
    return spans, stats, scores
