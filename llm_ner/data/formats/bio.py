"""Char-per-line tag files (CoNLL style): ``CHAR [COLUMNS...] TAG`` per line, a blank line between
sentences, in the BIO, BIOES or BMES scheme; and the conversion between tags and spans."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ...errors import DataError
from ..files import input_lines, read_lines_or_errors
from ..outputs import atomic_path
from ..types import Example, LoadReport, Span
from ._base import InputFormat, looks_like_json

TAG_SCHEMES = ("bio", "bioes", "bmes")


def spans_to_tags(length: int, spans: Sequence[Span], scheme: str = "bio") -> list[str]:
    """Render non-overlapping spans as one tag per character."""
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r} (choose from {', '.join(TAG_SCHEMES)})")
    tags = ["O"] * length
    ordered = sorted(spans)
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            raise ValueError(f"overlapping spans {a} and {b} cannot be written as tags")
    inside = "M" if scheme == "bmes" else "I"
    for span in ordered:
        if not 0 <= span.start < span.end <= length:
            raise ValueError(f"span {span} outside a text of length {length}")
        if scheme == "bio":
            tags[span.start] = f"B-{span.label}"
            for i in range(span.start + 1, span.end):
                tags[i] = f"I-{span.label}"
        elif span.end - span.start == 1:
            tags[span.start] = f"S-{span.label}"
        else:
            tags[span.start] = f"B-{span.label}"
            for i in range(span.start + 1, span.end - 1):
                tags[i] = f"{inside}-{span.label}"
            tags[span.end - 1] = f"E-{span.label}"
    return tags


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep:
        prefix, sep, label = tag.partition("_")
    if not sep or len(prefix) != 1 or prefix not in "BIMES" or not label:
        raise ValueError(f"malformed tag {tag!r} (expected O or B-/I-/M-/E-/S-LABEL)")
    return prefix, label


def tags_to_spans(tags: Sequence[str], scheme: str = "bio") -> list[Span]:
    """Decode one sentence's tags; raise ValueError ("tag N: ...") on an invalid sequence.

    Strict on purpose: an ``I-`` with no ``B-`` before it, an unclosed BIOES/BMES entity or a
    label change inside an entity is an error, not silently repaired.
    """
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}")
    inside = "M" if scheme == "bmes" else "I"
    allowed = {"bio": "BI", "bioes": "BIES", "bmes": "BMES"}[scheme]
    spans: list[Span] = []
    open_start: int | None = None
    open_label = ""

    def fail(i: int, message: str) -> ValueError:
        return ValueError(f"tag {i + 1} ({tags[i]!r}): {message}")

    for i, tag in enumerate(tags):
        try:
            prefix, label = _split_tag(tag)
        except ValueError as exc:
            raise fail(i, str(exc)) from None
        if prefix != "O" and prefix not in allowed:
            raise fail(i, f"prefix {prefix}- is not part of the {scheme.upper()} scheme")
        if scheme == "bio":
            if prefix in ("O", "B") and open_start is not None:
                spans.append(Span(open_start, i, open_label))
                open_start = None
            if prefix == "B":
                open_start, open_label = i, label
            elif prefix == "I":
                if open_start is None:
                    raise fail(i, f"I-{label} with no B-{label} before it")
                if label != open_label:
                    raise fail(i, f"I-{label} continues a {open_label} entity")
            continue
        # BIOES / BMES: every entity is S, or B (I|M)* E.
        if prefix in ("O", "B", "S") and open_start is not None:
            raise fail(i, f"{open_label} entity opened at tag {open_start + 1} is not closed by E-")
        if prefix == "B":
            open_start, open_label = i, label
        elif prefix == "S":
            spans.append(Span(i, i + 1, label))
        elif prefix in (inside, "E"):
            if open_start is None:
                raise fail(i, f"{prefix}-{label} with no B-{label} before it")
            if label != open_label:
                raise fail(i, f"{prefix}-{label} continues a {open_label} entity")
            if prefix == "E":
                spans.append(Span(open_start, i + 1, label))
                open_start = None
    if open_start is not None:
        if scheme == "bio":
            spans.append(Span(open_start, len(tags), open_label))
        else:
            raise ValueError(f"{open_label} entity opened at tag {open_start + 1} is not closed by E-")
    return spans


def detect_scheme(tags: Iterable[str]) -> str:
    """Guess the tag scheme from the prefixes used (M- means BMES; E-/S- means BIOES)."""
    prefixes = set()
    for tag in tags:
        if tag != "O":
            prefixes.add(tag[:1])
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"E", "S"}:
        return "bioes"
    return "bio"


# ---------------------------------------------------------------------------------------------
# Char-per-line tag files


def _split_char_line(line: str) -> tuple[str, str, int]:
    """``(char, tag, columns)`` of a ``CHAR [COLUMNS...] TAG`` line: the first column is the character,
    the last the tag (CoNLL); trailing whitespace is ignored and the character itself may be a space."""
    line = line.rstrip(" \t")
    cut = max(line.rfind(" "), line.rfind("\t"))
    if cut <= 0:
        raise ValueError(f"expected 'CHAR TAG', got {line!r}")
    head, tag = line[:cut], line[cut + 1 :]
    columns = head.split()
    if not columns:
        return head[0], tag, 2  # the character is a space
    return columns[0], tag, len(columns) + 1


def read_bio(
    path: str | Path,
    scheme: str | None = None,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """Read a char-per-line tag file (``char TAG`` per line, blank line between sentences).

    The scheme (bio, bioes, bmes) is detected from the whole file unless given; the label set
    is read from the data unless ``labels`` restricts it. Ids are 0-based sentence indices;
    a bad sentence's error names the line of the offending tag.
    """
    path = Path(path)
    allowed = frozenset(labels) if labels is not None else None
    report = LoadReport(str(path))
    sentences: list[tuple[int, list[tuple[int, str, str]]]] = []
    current: list[tuple[int, str, str]] = []
    bad_lines: dict[int, DataError] = {}
    column_counts: dict[int, int] = {}
    for number, line in read_lines_or_errors(path):
        if isinstance(line, DataError):  # not UTF-8: its sentence is a bad record
            bad_lines.setdefault(len(sentences), line)
            current.append((number, "", "O"))
            continue
        if not line.strip():
            if current:
                sentences.append((len(sentences), current))
                current = []
            continue
        if not sentences and not current and looks_like_json(line):
            raise DataError(
                path,
                number,
                "this is JSON, not a char-per-line tag file: CLUENER data must be JSON lines, "
                'one {"text": ..., "label": ...} object per line',
            )
        try:
            char, tag, columns = _split_char_line(line)
            column_counts[columns] = column_counts.get(columns, 0) + 1
        except ValueError as exc:
            bad_lines.setdefault(len(sentences), DataError(path, number, str(exc)))
            current.append((number, "", "O"))
            continue
        current.append((number, char, tag))
    if current:
        sentences.append((len(sentences), current))
    if not sentences and not allow_empty:
        raise DataError(path, None, "empty file: no sentences")
    if any(count > 2 for count in column_counts):
        widths = ", ".join(f"{n} columns on {column_counts[n]} lines" for n in sorted(column_counts))
        report.warnings.append(
            f"{path}: {widths}: read the first column as the character and the last as the tag (CoNLL)"
        )
    if scheme is None:
        scheme = detect_scheme(tag for _, rows in sentences for _, _, tag in rows if tag)
    examples: list[Example] = []
    for index, rows in sentences:
        try:
            if index in bad_lines:
                raise bad_lines[index]
            tags = [tag for _, _, tag in rows]
            try:
                spans = tags_to_spans(tags, scheme)
            except ValueError as exc:
                message = str(exc)
                line_number = rows[0][0]
                if message.startswith("tag "):
                    position = int(message.split()[1]) - 1
                    line_number = rows[position][0]
                    message = message.split(": ", 1)[1]
                raise DataError(path, line_number, message) from None
            offsets = []
            position = 0
            for _, char, _ in rows:
                offsets.append(position)
                position += len(char)
            offsets.append(position)
            text = "".join(char for _, char, _ in rows)
            spans = [Span(offsets[s.start], offsets[s.end], s.label) for s in spans]
            for span in spans:
                if allowed is not None and span.label not in allowed:
                    line_number = rows[offsets.index(span.start)][0]
                    raise DataError(
                        path,
                        line_number,
                        f"unknown label {span.label!r} (known: {', '.join(sorted(allowed))})",
                    )
        except DataError as error:
            report.skip(error, lenient)
            continue
        examples.append(Example(str(index), text, spans))
    report.records = len(examples)
    return examples, report


def write_bio(examples: Iterable[Example], path: str | Path, scheme: str = "bio") -> int:
    """Write a char-per-line tag file; returns the number of sentences written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for example in examples:
            tags = spans_to_tags(len(example.text), example.spans, scheme)
            for i, (char, tag) in enumerate(zip(example.text, tags)):
                if char in "\n\r":
                    # A line break cannot be a line of its own in this format.
                    raise ValueError(f"example {example.id}: character {i} is a line break {char!r}")
                out.write(f"{char} {tag}\n")
            out.write("\n")
            count += 1
    return count


_TAG_LINE = re.compile(r"^.+[ \t](O|[BIMES][-_]\S+)[ \t]*$")


def looks_like_tags(path: Path) -> bool:
    """True when the first lines (up to 20, blank ones aside) all look like ``CHAR TAG``."""
    first = [raw.decode("utf-8", errors="replace").rstrip("\r") for _, raw in zip(range(20), input_lines(path))]
    lines = [line for line in first if line.strip()]
    return bool(lines) and all(_TAG_LINE.match(line) for line in lines)


def _tag_format(name: str, order: int) -> InputFormat:
    """The format of tag files in scheme ``name``; ``bio`` detects the scheme from the file's tags."""
    file_scheme = None if name == "bio" else name

    def read(
        path: str | Path,
        *,
        labels: Iterable[str] | None = None,
        lenient: bool = False,
        allow_empty: bool = False,
        scheme: str | None = None,
    ) -> tuple[list[Example], LoadReport]:
        chosen = scheme if scheme is not None else file_scheme
        return read_bio(path, scheme=chosen, labels=labels, lenient=lenient, allow_empty=allow_empty)

    def write(examples: Iterable[Example], path: str | Path) -> int:
        return write_bio(examples, path, name)

    # ``bio`` is what ``auto`` falls back to for labelled data: a file that is neither JSON nor tags
    # gets the tag reader's errors, which name the offending line.
    return InputFormat(
        name,
        order=order,
        read=read,
        write=write,
        recognise=looks_like_tags if name == "bio" else None,
        fallback=name == "bio",
        options=("scheme",),
    )


FORMATS = tuple(_tag_format(name, order) for order, name in enumerate(TAG_SCHEMES, 40))
