"""Long sentences: pieces for models with a length limit (LLM extraction, baselines, serve)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])")
_CLAUSE_END = re.compile(r"(?<=[，,、：:])")


def split_long(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Pieces of at most ``max_chars`` characters with their offsets, cut after sentence
    punctuation first, then after clause punctuation, and only then anywhere."""
    if len(text) <= max_chars:
        return [(0, text)]
    pieces: list[tuple[int, str]] = []

    def cut(offset: int, segment: str, patterns: Sequence[re.Pattern]) -> None:
        if len(segment) <= max_chars:
            pieces.append((offset, segment))
            return
        if not patterns:
            for start in range(0, len(segment), max_chars):
                pieces.append((offset + start, segment[start : start + max_chars]))
            return
        parts = [p for p in patterns[0].split(segment) if p]
        if len(parts) == 1:
            cut(offset, segment, patterns[1:])
            return
        # Greedily join consecutive parts while they fit.
        current, current_offset, position = "", offset, offset
        for part in parts:
            if current and len(current) + len(part) > max_chars:
                cut(current_offset, current, patterns[1:])
                current, current_offset = "", position
            current += part
            position += len(part)
        if current:
            cut(current_offset, current, patterns[1:])

    cut(0, text, [_SENTENCE_END, _CLAUSE_END])
    return pieces
