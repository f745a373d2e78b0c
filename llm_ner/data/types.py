"""The data types every stage shares: `Span`, `Example`, and the `LoadReport` of a reader."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Span:
    """An entity mention: ``text[start:end]`` (end-exclusive) of type ``label``."""

    start: int
    end: int
    label: str

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class Example:
    """One sentence with its entity spans (sorted by start, then end)."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spans = sorted(self.spans)

    def mention(self, span: Span) -> str:
        return self.text[span.start : span.end]


@dataclass
class LoadReport:
    """What a reader saw besides the examples it returned."""

    path: str
    records: int = 0
    skipped: list[DataError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def skip(self, error: DataError, lenient: bool) -> None:
        """Count a bad record as skipped when ``lenient``; else raise ``error`` (its cause hidden)."""
        if not lenient:
            raise error from None
        self.skipped.append(error)

    def warn_overlaps(self, where: str, example: Example) -> None:
        """One warning per pair of overlapping spans of ``example``; ``where`` is ``FILE:LINE``."""
        for a, b in find_overlaps(example.spans):
            self.warnings.append(
                f"{where}: overlapping spans {example.mention(a)!r} ({a.label} {a.start}-{a.end}) and "
                f"{example.mention(b)!r} ({b.label} {b.start}-{b.end})"
            )

    def summary(self) -> str:
        parts = [f"{self.path}: {self.records} records"]
        if self.skipped:
            lines = ", ".join(str(e.line) for e in self.skipped[:20])
            more = f" (+{len(self.skipped) - 20} more)" if len(self.skipped) > 20 else ""
            parts.append(f"skipped {len(self.skipped)} bad records at lines {lines}{more}")
        if self.warnings:
            parts.append(f"{len(self.warnings)} warnings")
        return "; ".join(parts)

    def lines(self, max_lines: int = 10) -> list[str]:
        """The summary, then the first skipped records and warnings, one line each."""
        lines = [self.summary()]
        lines += [f"  skipped {err}" for err in self.skipped[:max_lines]]
        lines += [f"  warning {warning}" for warning in self.warnings[:max_lines]]
        hidden = max(0, len(self.skipped) - max_lines) + max(0, len(self.warnings) - max_lines)
        if hidden:
            lines.append(f"  ... {hidden} more not shown")
        return lines

    def print(self, max_lines: int = 10) -> None:
        """Log the summary and the first skipped records and warnings (as a warning when there are any)."""
        level = logging.WARNING if self.skipped or self.warnings else logging.INFO
        log.log(level, "\n".join(self.lines(max_lines)))


def find_overlaps(spans: Sequence[Span]) -> list[tuple[Span, Span]]:
    """Pairs of overlapping spans in a start-sorted list."""
    pairs = []
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if b.start >= a.end:
                break
            pairs.append((a, b))
    return pairs


def claim_id(first_seen: dict[str, str], record_id: str, where: str) -> str:
    """``record_id``, remembered at ``where``; a `ValueError` if an earlier record has it (given in
    the file or assigned from the record index: both must be unique for matching by id)."""
    if record_id in first_seen:
        raise ValueError(f"duplicate id {record_id!r} (first at {first_seen[record_id]})")
    first_seen[record_id] = where
    return record_id
