"""What a format module declares: `InputFormat` objects, and the JSON sniffing several formats share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..json_values import JsonSyntaxError, JsonValueError, decode_json
from ..types import Example, LoadReport


class Reader(Protocol):
    """Reads a file into examples; a bad record raises `DataError` unless ``lenient`` (then it is counted)."""

    def __call__(
        self,
        path: str | Path,
        *,
        labels: Iterable[str] | None = None,
        lenient: bool = False,
        allow_empty: bool = False,
        **options: Any,
    ) -> tuple[list[Example], LoadReport]: ...


Writer = Callable[[Iterable[Example], str | Path], int]


@dataclass(frozen=True)
class InputFormat:
    """One ``--input-format`` choice: its reader, optional writer, and how ``auto`` recognises it.

    A module of `llm_ner.data.formats` lists its formats in a module-level ``FORMATS`` tuple; the
    registry (`llm_ner.data.formats`) collects them and offers them in ``order``.
    """

    name: str
    order: int  # place among the --input-format choices (ties: by name)
    read: Reader
    write: Writer | None = None  # (examples, path) -> records written
    # ``auto`` takes the first format, in order, whose ``recognise(path)`` is true, else the first
    # ``fallback`` format: a file that nothing recognises still gets the errors of a reader.
    recognise: Callable[[Path], bool] | None = None
    fallback: bool = False
    labelled: bool = True  # False: sentences only (extract and baseline inputs), not for `load_examples`
    options: tuple[str, ...] = ()  # keyword options the reader takes beyond the common ones (``scheme``)


def looks_like_json(line: str) -> bool:
    """A line that opens a JSON object or array (a file wrongly taken for a tag file)."""
    stripped = line.strip().lstrip("\ufeff")
    if stripped in ("[", "{"):
        return True
    if not stripped.startswith(("[", "{")):
        return False
    try:
        decode_json(stripped)
    except JsonSyntaxError:
        return stripped.startswith("{")
    except JsonValueError:
        return True  # JSON, but no record can be it (nested too deep, ...): the JSON reader says why
    return True
