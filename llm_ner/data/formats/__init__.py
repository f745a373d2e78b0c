"""The input-format registry: each module of this package declares its formats, found when it is imported.

A format module (any module here whose name does not start with ``_``) lists its `InputFormat`
objects in a module-level ``FORMATS`` tuple; adding a format is adding one such module. The
``--input-format`` choices, `load_examples`, `read_inputs` and ``auto`` all come from the formats
found, in their ``order``:

- labelled data (`load_examples`, ``INPUT_FORMATS``): the formats with ``labelled=True``;
- sentences to label (`read_inputs`, ``SENTENCE_INPUT_FORMATS``): every format, the sentence-only
  ones (plain text, JSON lines with ``text``) included.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from pathlib import Path

from ...errors import UsageError
from ..types import Example, LoadReport
from ._base import InputFormat


def _discover() -> tuple[InputFormat, ...]:
    """The formats the modules of this package declare, by (order, name); modules in name order."""
    found: dict[str, InputFormat] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue  # helpers shared by format modules
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        declared = getattr(module, "FORMATS", None)
        if declared is None:
            raise ImportError(f"{module.__name__} has no FORMATS tuple (name helper modules _like_this)")
        for fmt in declared:
            if fmt.name == "auto" or fmt.name in found:
                raise ImportError(f"{module.__name__}: input format name {fmt.name!r} is reserved or taken")
            found[fmt.name] = fmt
    return tuple(sorted(found.values(), key=lambda fmt: (fmt.order, fmt.name)))


FORMATS = _discover()
# Labelled data (`load_examples`), and sentences to label (`read_inputs`: also plain text and JSON
# lines with a "text" field). Every --input-format choice list is one of these two.
INPUT_FORMATS = ("auto", *(fmt.name for fmt in FORMATS if fmt.labelled))
SENTENCE_INPUT_FORMATS = ("auto", *(fmt.name for fmt in FORMATS))


def get_format(name: str, sentences: bool = False) -> InputFormat:
    """The format called ``name`` (not ``auto``); sentence-only formats too when ``sentences``.
    An unknown name is a `UsageError`."""
    for fmt in FORMATS:
        if fmt.name == name and (sentences or fmt.labelled):
            return fmt
    raise UsageError(f"unknown input format {name!r} ({', '.join(INPUT_FORMATS)})")


def guess_format(path: str | Path, sentences: bool = False) -> str:
    """The format ``auto`` means for ``path``: the first format, in order, that recognises the file,
    else the first fallback. Labelled data: ``cluener`` for JSON (the first non-blank line opens a JSON
    object or array), else ``bio``; sentences: ``jsonl`` for JSON, ``bio`` for ``CHAR TAG`` lines,
    else ``text``."""
    path = Path(path)
    candidates = [fmt for fmt in FORMATS if sentences or fmt.labelled]
    for fmt in candidates:
        if fmt.recognise is not None and fmt.recognise(path):
            return fmt.name
    fallback = next((fmt for fmt in candidates if fmt.fallback), None)
    if fallback is None:
        raise UsageError(f"{path}: no input format recognises this file; name one with --input-format")
    return fallback.name


def load_examples(
    path: str | Path,
    input_format: str = "auto",
    labels: Iterable[str] | None = None,
    lenient: bool = False,
    scheme: str | None = None,
    allow_empty: bool = False,
) -> tuple[list[Example], LoadReport]:
    """Read labelled data in ``input_format`` (one of ``INPUT_FORMATS``: auto, cluener, bio, bioes, bmes,
    labelstudio, doccano; auto means cluener or a tag file). ``scheme`` overrides a tag file's scheme."""
    fmt = get_format(guess_format(path) if input_format == "auto" else input_format)
    options = {"scheme": scheme} if scheme is not None and "scheme" in fmt.options else {}
    return fmt.read(path, labels=labels, lenient=lenient, allow_empty=allow_empty, **options)


def read_inputs(path: str | Path, input_format: str = "auto", lenient: bool = False) -> list[Example]:
    """Sentences to extract from: plain text (one per line), JSON lines with a ``text`` field
    (an ``id`` is kept; CLUENER labels are read but not needed) or any labelled format
    (``SENTENCE_INPUT_FORMATS``). Skipped records and warnings are printed to stderr."""
    fmt = get_format(guess_format(path, sentences=True) if input_format == "auto" else input_format, sentences=True)
    examples, report = fmt.read(path, lenient=lenient)
    if report.skipped or report.warnings:
        report.print()
    return examples
