"""Label Studio and doccano by name, with the per-entity scores they carry: predictions go out to an
annotation tool as pre-annotations (`llm-ner export`) and confidences come back (`confidence.read_scores`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .formats import get_format
from .formats.doccano import write_doccano
from .formats.labelstudio import write_labelstudio
from .types import Example, LoadReport, Span

ANNOTATION_FORMATS = ("labelstudio", "doccano")


def read_annotations(
    path: str | Path,
    input_format: str,
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    allow_empty: bool = False,
    scores: dict[str, dict[Span, float]] | None = None,
) -> tuple[list[Example], LoadReport]:
    """Read a Label Studio or doccano file; records without an id get their 0-based index.

    ``scores``, if given, is filled with the confidences the file carries (sentence id -> span -> score).
    """
    if input_format not in ANNOTATION_FORMATS:
        raise ValueError(f"unknown annotation format {input_format!r} ({', '.join(ANNOTATION_FORMATS)})")
    read = get_format(input_format).read  # the registry's reader, which fills ``scores``
    return read(path, labels=labels, lenient=lenient, allow_empty=allow_empty, scores=scores)


def write_annotations(
    examples: Sequence[Example],
    path: str | Path,
    output_format: str,
    scores: dict[str, dict[Span, float]] | None = None,
    gold: dict[str, Example] | None = None,
    as_annotation: bool = False,
) -> int:
    """Write Label Studio JSON (an array of tasks) or doccano JSON lines; temp file + rename.
    ``gold`` and ``as_annotation`` apply to Label Studio (doccano has no separate pre-annotations)."""
    if output_format == "doccano":
        return write_doccano(examples, path, scores)
    if output_format != "labelstudio":
        raise ValueError(f"unknown annotation format {output_format!r} ({', '.join(ANNOTATION_FORMATS)})")
    return write_labelstudio(examples, path, scores, gold, as_annotation)
