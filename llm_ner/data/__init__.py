"""Data layer: one `Example` type, the input formats behind one registry, atomic file IO, text splitting.

Offsets are end-exclusive everywhere inside the toolkit (`text[span.start:span.end]`); a file format's
own convention (CLUENER's inclusive end) is converted at the file boundary only.

Every reader validates what it loads. A bad record raises `DataError` naming the file, the line
and the problem; with ``lenient=True`` the record is skipped instead and listed in the returned
`LoadReport`, so nothing is ever dropped without being counted.

Modules: `types` (Span, Example, LoadReport), `files` (the input opener, UTF-8 lines), `outputs` (the output
rule, atomic writes), `json_values` (`decode_json`: the JSON a record can be, for every JSON format and for
request bodies), `text` (`split_long`), `formats` (the registry: `load_examples`, `read_inputs`, one module
per format), `annotations` (Label Studio and doccano with their scores). This package imports nothing of
llm-ner but `llm_ner.errors`.
"""

from .annotations import ANNOTATION_FORMATS, read_annotations, write_annotations
from .files import read_lines, read_lines_or_errors
from .formats import (
    FORMATS,
    INPUT_FORMATS,
    SENTENCE_INPUT_FORMATS,
    InputFormat,
    get_format,
    guess_format,
    load_examples,
    read_inputs,
)
from .formats.bio import TAG_SCHEMES, detect_scheme, read_bio, spans_to_tags, tags_to_spans, write_bio
from .formats.cluener import example_to_cluener, read_cluener, write_cluener
from .formats.doccano import doccano_record
from .formats.labelstudio import labelstudio_task
from .json_values import (
    JsonSyntaxError,
    JsonValueError,
    check_text,
    check_value,
    decode_json,
    is_offset,
    record_id,
    score_value,
    show,
)
from .outputs import (
    atomic_path,
    check_output_folder,
    check_output_path,
    clear_output_folder,
    naming_write_failures,
    remove_stale_temporaries,
    temporary_prefix,
    write_jsonl_atomic,
    write_text_atomic,
)
from .text import split_long
from .types import Example, LoadReport, Span, claim_id, find_overlaps

__all__ = [
    "ANNOTATION_FORMATS",
    "FORMATS",
    "INPUT_FORMATS",
    "SENTENCE_INPUT_FORMATS",
    "TAG_SCHEMES",
    "Example",
    "JsonSyntaxError",
    "JsonValueError",
    "InputFormat",
    "LoadReport",
    "Span",
    "atomic_path",
    "check_output_folder",
    "check_output_path",
    "check_text",
    "check_value",
    "claim_id",
    "clear_output_folder",
    "decode_json",
    "detect_scheme",
    "doccano_record",
    "example_to_cluener",
    "find_overlaps",
    "get_format",
    "guess_format",
    "is_offset",
    "labelstudio_task",
    "load_examples",
    "naming_write_failures",
    "read_annotations",
    "read_bio",
    "read_cluener",
    "read_inputs",
    "read_lines",
    "read_lines_or_errors",
    "record_id",
    "remove_stale_temporaries",
    "score_value",
    "show",
    "spans_to_tags",
    "split_long",
    "tags_to_spans",
    "temporary_prefix",
    "write_annotations",
    "write_bio",
    "write_cluener",
    "write_jsonl_atomic",
    "write_text_atomic",
]
