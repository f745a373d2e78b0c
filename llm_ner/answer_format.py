"""Answer formats: how a sentence's entities are written as the assistant's answer, and read back.

Each format is one object (as LangExtract's format handlers) holding both directions of its contract:

- `AnswerFormat.render`: an example's spans as the training answer, compact JSON (fewest tokens to
  generate, and the exact string the parser reads back);
- `AnswerFormat.read_items`: the items of a decoded answer of its shape, as ``(text, label)`` pairs
  (models also write other key spellings, pairs and wrappers);
- `AnswerFormat.align`: where those strings are in the sentence;
- `AnswerFormat.json_schema`: the ``response_format`` a server constrains answers with; None for a
  format with no constrained form, which ``--constrained`` refuses.

``mentions``: ``[{"text":..,"label":..}, ...]`` in reading order, repeats kept, placed with a
left-to-right cursor; its literals are also the grammar of constrained decoding (`constrained`).
``grouped``: ``{label: [unique strings]}``, every occurrence placed, longest first, no overlaps.

`parse_answer` and `answer_to_spans` read an answer of either format: the shape of its JSON says
which (a model may answer in the other one). They never raise and never evaluate anything. The
prompt's per-format instructions are in the prompt YAML files (``format_instructions``).
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from .data import Example, Span
from .errors import UsageError
from .labels import LabelSchema
from .parsing import MentionCollector, ParseStats, align_grouped, align_mentions, first_json_value, pick


def _dumps(value: object) -> str:
    # Compact JSON: fewer tokens to generate, and the exact string the parser reads back.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class AnswerFormat(ABC):
    """One answer format: written by `render`, read by `read_items`, placed by `align`."""

    name: ClassVar[str]
    constrained: ClassVar[bool] = False  # has a constrained form: a local grammar and `json_schema`

    @abstractmethod
    def render(self, example: Example, label_order: Sequence[str] | None = None) -> str:
        """The assistant answer for ``example`` (``label_order``: the schema's keys, where order matters)."""

    @abstractmethod
    def read_items(self, value: object, found: MentionCollector) -> bool:
        """Add the items of a decoded answer to ``found``; False (nothing added) when ``value`` does not
        have this format's shape."""

    @abstractmethod
    def align(
        self, text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None, placed: list | None = None
    ) -> list[Span]:
        """Spans of ``text`` for the read mentions; ``placed`` (a list) receives ``(index of the
        mention, span)`` of each placed span."""

    def json_schema(self, schema: LabelSchema) -> dict | None:
        """The ``response_format`` of servers with structured outputs; None: no constrained form."""
        return None


class MentionsFormat(AnswerFormat):
    """``[{"text":..,"label":..}, ...]`` in reading order, repeats kept."""

    name = "mentions"
    constrained = True

    # The answer's literal text around the JSON-escaped strings: what `render` writes and the
    # constrained grammar allows (single bytes for the list's brackets and separator).
    list_open = "["
    item_open = '{"text":"'
    item_middle = '","label":"'
    item_close = '"}'
    separator = ","
    list_close = "]"

    # Keys models use for the entity string and its type inside a mention object, and for an
    # object wrapped around the list.
    text_keys = ("text", "entity", "mention", "span", "word", "name", "value", "实体", "实体名", "文本")
    label_keys = ("label", "type", "category", "entity_type", "tag", "class", "类型", "标签", "类别", "实体类型")
    wrapper_keys = ("entities", "entity_list", "result", "results", "output", "answer", "实体", "结果")

    @staticmethod
    def escape(string: str) -> str:
        """``string`` as the inside of a JSON string (quotes, backslashes and control characters escaped)."""
        return json.dumps(string, ensure_ascii=False)[1:-1]

    def render(self, example: Example, label_order: Sequence[str] | None = None) -> str:
        items = (
            self.item_open + self.escape(example.mention(s)) + self.item_middle + self.escape(s.label) + self.item_close
            for s in example.spans
        )
        return self.list_open + self.separator.join(items) + self.list_close

    def read_items(self, value: object, found: MentionCollector) -> bool:
        if isinstance(value, dict):
            wrapped = pick(value, self.wrapper_keys)
            if isinstance(wrapped, list) and len(value) == 1:
                value = wrapped
                found.stats.repaired = 1
        if not isinstance(value, list):
            return False
        for item in value:
            if isinstance(item, dict):
                if pick(item, self.text_keys) is None and len(item) == 1:  # {"张三": "name"}
                    ((text, label),) = item.items()
                    found.add(text, label)
                else:
                    found.add(pick(item, self.text_keys), pick(item, self.label_keys))
            elif isinstance(item, list) and len(item) == 2:  # ["张三", "name"]
                found.add(item[0], item[1])
            else:
                found.invalid()
        return True

    def align(
        self, text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None, placed: list | None = None
    ) -> list[Span]:
        return align_mentions(text, mentions, stats, placed)

    def json_schema(self, schema: LabelSchema) -> dict:
        """A list of {text, label} with the labels as an enum. The substring rule cannot be a JSON
        schema; the parser checks it."""
        item = {
            "type": "object",
            "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": list(schema.keys)}},
            "required": ["text", "label"],
            "additionalProperties": False,
        }
        return {
            "type": "json_schema",
            "json_schema": {"name": "entities", "strict": True, "schema": {"type": "array", "items": item}},
        }


class GroupedFormat(AnswerFormat):
    """``{label: [unique strings in order of first appearance]}``, labels in schema order when given,
    else in order of first appearance."""

    name = "grouped"

    def render(self, example: Example, label_order: Sequence[str] | None = None) -> str:
        grouped: dict[str, list[str]] = {}
        for span in example.spans:
            strings = grouped.setdefault(span.label, [])
            mention = example.mention(span)
            if mention not in strings:
                strings.append(mention)
        if label_order is not None:
            rank = {key: i for i, key in enumerate(label_order)}
            grouped = dict(sorted(grouped.items(), key=lambda item: rank.get(item[0], len(rank))))
        return _dumps(grouped)

    def read_items(self, value: object, found: MentionCollector) -> bool:
        if not isinstance(value, dict):
            return False
        for label, strings in value.items():
            if isinstance(strings, str):
                strings = [strings]
            if not isinstance(strings, list):
                found.invalid()
                continue
            for text in strings:
                found.add(text, label)
        return True

    def align(
        self, text: str, mentions: list[tuple[str, str]], stats: ParseStats | None = None, placed: list | None = None
    ) -> list[Span]:
        return align_grouped(text, mentions, stats, placed)


MENTIONS = MentionsFormat()
GROUPED = GroupedFormat()
# In the order a parsed answer is tried: a list, or an object wrapped around one, is read as mentions.
_FORMATS: dict[str, AnswerFormat] = {f.name: f for f in (MENTIONS, GROUPED)}
ANSWER_FORMATS = tuple(_FORMATS)
NO_FORMAT = "none"  # the format `parse_answer` reports for an answer it could not read


def get_format(name: str) -> AnswerFormat:
    """The answer format called ``name``; `UsageError` for an unknown name."""
    answer_format = _FORMATS.get(name) if isinstance(name, str) else None
    if answer_format is None:
        raise UsageError(f"unknown answer format {name!r} (choose from {', '.join(ANSWER_FORMATS)})")
    return answer_format


def format_answer(example: Example, answer_format: str = "mentions", label_order: Sequence[str] | None = None) -> str:
    """The assistant answer for an example in the named format (see `AnswerFormat.render`)."""
    return get_format(answer_format).render(example, label_order)


# ---------------------------------------------------------------------------------------------
# Reading answers back


def parse_answer(answer: str, schema: LabelSchema | None = None) -> tuple[list[tuple[str, str]], str, ParseStats]:
    """Read ``(entity text, label)`` pairs from an answer of either format; never raises.

    Returns the pairs, the format found (``mentions`` for a list, ``grouped`` for an object,
    ``none`` when unreadable) and the counters. Labels are mapped to schema keys (Chinese
    names and aliases accepted); pairs with unknown labels are dropped and counted.
    """
    stats = ParseStats(answers=1)
    try:
        value, repaired = first_json_value(answer if isinstance(answer, str) else "")
    except (ValueError, RecursionError):
        stats.parse_failures = 1
        return [], NO_FORMAT, stats
    stats.repaired = int(repaired)
    found = MentionCollector(stats, schema)
    for answer_format in _FORMATS.values():
        if answer_format.read_items(value, found):
            return found.pairs, answer_format.name, stats
    stats.parse_failures = 1
    return [], NO_FORMAT, stats


def align_spans(
    text: str,
    mentions: list[tuple[str, str]],
    answer_format: str,
    stats: ParseStats | None = None,
    placed: list | None = None,
) -> list[Span]:
    """Spans of ``text`` for parsed mentions of the given format (``none``: nothing to place);
    ``placed`` as in `AnswerFormat.align`."""
    if answer_format == NO_FORMAT:
        return []
    return get_format(answer_format).align(text, mentions, stats, placed)


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
        if label and answer[cursor : label.start()].strip(' ,\n"').lower() in MENTIONS.label_keys:
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
