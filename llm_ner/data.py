"""Data layer: one `Example` type, CLUENER JSON-lines and char-per-line BIO/BIOES/BMES I/O.

Offsets are end-exclusive everywhere inside the toolkit (`text[span.start:span.end]`); the
CLUENER file format's inclusive end is converted at the file boundary only.

Every reader validates what it loads. A bad record raises `DataError` naming the file, the line
and the problem; with ``lenient=True`` the record is skipped instead and listed in the returned
`LoadReport`, so nothing is ever dropped without being counted.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, UsageError

TAG_SCHEMES = ("bio", "bioes", "bmes")
# Labelled data (`load_examples`), and sentences to label (`extraction.read_inputs`: also plain
# text and JSON lines with a "text" field). Every --input-format choice list is one of these two.
INPUT_FORMATS = ("auto", "cluener", *TAG_SCHEMES, "labelstudio", "doccano")
SENTENCE_INPUT_FORMATS = ("auto", "text", "jsonl", *INPUT_FORMATS[1:])



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

    def print(self, stream=None, max_lines: int = 10) -> None:
        """Print the summary, the first skipped records and warnings (to stderr by default)."""
        stream = stream if stream is not None else sys.stderr
        print(self.summary(), file=stream)
        for err in self.skipped[:max_lines]:
            print(f"  skipped {err}", file=stream)
        for warning in self.warnings[:max_lines]:
            print(f"  warning {warning}", file=stream)
        hidden = max(0, len(self.skipped) - max_lines) + max(0, len(self.warnings) - max_lines)
        if hidden:
            print(f"  ... {hidden} more not shown", file=stream)


def find_overlaps(spans: Sequence[Span]) -> list[tuple[Span, Span]]:
    """Pairs of overlapping spans in a start-sorted list."""
    pairs = []
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if b.start >= a.end:
                break
            pairs.append((a, b))
    return pairs


# ---------------------------------------------------------------------------------------------
# Writing: a temporary file beside the target, renamed into place, so an error or a full disk
# never leaves a truncated file or destroys the previous one.




def check_output_path(output: str | Path, inputs: dict[str, str | Path | None], option: str = "--output") -> None:
    """Refuse (`UsageError`) an output that is one of the inputs: writing it would destroy the input."""
    out = Path(output)
    for name, path in inputs.items():
        if path is None:
            continue
        same = out.resolve() == Path(path).resolve()
        if not same and out.exists() and Path(path).exists():
            same = os.path.samefile(out, path)
        if same:
            raise UsageError(f"{option} {output} is the {name} file; writing it would destroy the input")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` on success, removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file 0600 and the rename keeps that: give the output the mode a plain
        # open() would (0666 less the umask), so predictions and reports stay shareable.
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (reading it means setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(text: str, path: str | Path) -> None:
    """Write a UTF-8 text file via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl_atomic(records: Iterable[dict], path: str | Path) -> int:
    """Write JSON lines via a temporary file and a rename; returns the number of records."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Reading lines: UTF-8 with the failing line named.


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without newline): a BOM is dropped, lines end at
    ``\n`` only (a U+2028 inside a sentence is text, not a line break)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                path,
                number,
                f"not valid UTF-8 (byte {exc.start} of the line: {line[exc.start : exc.start + 1]!r})",
            ) from exc
        yield number, text.rstrip("\r")


# ---------------------------------------------------------------------------------------------
# CLUENER JSON lines


def _cluener_record(obj: object, labels: frozenset[str] | None) -> tuple[str | None, str, list[Span]]:
    """Validate one decoded CLUENER object; raise ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if not isinstance(text, str):
        raise ValueError('missing "text" string')
    record_id = obj.get("id")
    record_id = None if record_id is None else str(record_id)
    label_field = obj.get("label", {})
    if label_field is None:
        label_field = {}
    if not isinstance(label_field, dict):
        raise ValueError('"label" must be an object {type: {entity: [[start, end], ...]}}')
    spans: set[Span] = set()
    for label, entities in label_field.items():
        if labels is not None and label not in labels:
            raise ValueError(f"unknown label {label!r} (known: {', '.join(sorted(labels))})")
        if not isinstance(entities, dict):
            raise ValueError(f"label {label!r}: expected {{entity: [[start, end], ...]}}")
        for entity, offsets in entities.items():
            if not isinstance(offsets, list) or not offsets:
                raise ValueError(f"{label} {entity!r}: expected a non-empty list of [start, end]")
            for pair in offsets:
                if (
                    not isinstance(pair, list)
                    or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                ):
                    raise ValueError(f"{label} {entity!r}: offsets {pair!r} are not [start, end] integers")
                start, end_inclusive = pair
                if start > end_inclusive:
                    raise ValueError(f"{label} {entity!r}: offsets [{start}, {end_inclusive}]: start is after end")
                if not 0 <= start <= end_inclusive < len(text):
                    raise ValueError(
                        f"{label} {entity!r}: offsets [{start}, {end_inclusive}] outside the text "
                        f"(length {len(text)}; CLUENER ends are inclusive)"
                    )
                found = text[start : end_inclusive + 1]
                if found != entity:
                    raise ValueError(
                        f"{label} {entity!r}: text[{start}:{end_inclusive + 1}] is {found!r}, not the entity string"
                    )
                spans.add(Span(start, end_inclusive + 1, label))
    return record_id, text, sorted(spans)


def claim_id(first_seen: dict[str, str], record_id: str, where: str) -> str:
    """``record_id``, remembered at ``where``; a `ValueError` if an earlier record has it (given in
    the file or assigned from the record index: both must be unique for matching by id)."""
    if record_id in first_seen:
        raise ValueError(f"duplicate id {record_id!r} (first at {first_seen[record_id]})")
    first_seen[record_id] = where
    return record_id


def read_cluener(
    path: str | Path,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """Read a CLUENER JSON-lines file (``label`` optional, e.g. for unlabelled test files).

    Records without an ``id`` get their 0-based record index as id. ``labels`` restricts the
    allowed types; overlapping spans are kept and reported as warnings.
    """
    path = Path(path)
    allowed = frozenset(labels) if labels is not None else None
    report = LoadReport(str(path))
    examples: list[Example] = []
    first_seen: dict[str, str] = {}
    index = 0
    for number, line in read_lines(path):
        if not line.strip():
            continue
        index += 1
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            record_id, text, spans = _cluener_record(obj, allowed)
            record_id = claim_id(first_seen, record_id if record_id is not None else str(index - 1), f"line {number}")
        except ValueError as exc:
            reason = str(exc)
            if index == 1 and line.strip().startswith("["):
                reason += '; CLUENER data is JSON lines: one {"text": ..., "label": ...} object per line, not an array'
            report.skip(DataError(path, number, reason), lenient)
            continue
        example = Example(record_id, text, spans)
        report.warn_overlaps(f"{path}:{number}", example)
        examples.append(example)
    if index == 0 and not allow_empty:
        raise DataError(path, None, "empty file: no records")
    report.records = len(examples)
    return examples, report


def example_to_cluener(example: Example, with_id: bool = True) -> dict:
    """The CLUENER JSON object of an example (inclusive ends), spans grouped by type and text."""
    label: dict[str, dict[str, list[list[int]]]] = {}
    for span in example.spans:
        label.setdefault(span.label, {}).setdefault(example.mention(span), []).append([span.start, span.end - 1])
    record: dict = {"id": example.id} if with_id else {}
    record["text"] = example.text
    record["label"] = label
    return record


def write_cluener(examples: Iterable[Example], path: str | Path, with_id: bool = True) -> int:
    """Write CLUENER JSON lines; returns the number of records written."""
    return write_jsonl_atomic((example_to_cluener(example, with_id) for example in examples), path)


# ---------------------------------------------------------------------------------------------
# Tags <-> spans


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


def _looks_like_json(line: str) -> bool:
    """A line that opens a JSON object or array (a file wrongly taken for a tag file)."""
    stripped = line.strip().lstrip("\ufeff")
    if stripped in ("[", "{"):
        return True
    if not stripped.startswith(("[", "{")):
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return stripped.startswith("{")
    return True


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
    for number, line in read_lines(path):
        if not line.strip():
            if current:
                sentences.append((len(sentences), current))
                current = []
            continue
        if not sentences and not current and _looks_like_json(line):
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


# ---------------------------------------------------------------------------------------------


def guess_format(path: str | Path) -> str:
    """``cluener`` for JSON (first non-blank line opens a JSON object or array), else ``bio``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    return "cluener" if _looks_like_json(line.decode("utf-8", errors="replace")) else "bio"
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    return "cluener"


def load_examples(
    path: str | Path,
    input_format: str = "auto",
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    scheme: str | None = None,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """Read CLUENER, char-per-line tag data, Label Studio or doccano (``input_format``: auto, cluener, bio,
    bioes, bmes, labelstudio, doccano; auto means cluener or a tag file)."""
    if input_format == "auto":
        input_format = guess_format(path)
    if input_format == "cluener":
        return read_cluener(path, labels=labels, lenient=lenient, allow_empty=allow_empty)
    if input_format in ("bio", *TAG_SCHEMES):
        if input_format != "bio" and scheme is None:
            scheme = input_format
        return read_bio(path, scheme=scheme, labels=labels, lenient=lenient, allow_empty=allow_empty)
    if input_format in ("labelstudio", "doccano"):
        from .annotation_formats import read_annotations

        return read_annotations(path, input_format, labels=labels, lenient=lenient, allow_empty=allow_empty)
    raise UsageError(f"unknown input format {input_format!r} ({', '.join(INPUT_FORMATS)})")


# ---------------------------------------------------------------------------------------------
# Long sentences: pieces for models with a length limit (LLM extraction, baselines, serve)


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
