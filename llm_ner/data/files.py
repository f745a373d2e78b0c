"""File IO every format and stage shares: UTF-8 lines with the failing line named, and atomic writes.

Writing goes to a temporary file beside the target, renamed into place, so an error or a full disk
never leaves a truncated file or destroys the previous one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError, UsageError


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without newline): a BOM is dropped, lines end at
    ``\n`` only (a U+2028 inside a sentence is text, not a line break). A line that is not UTF-8
    raises `DataError`; readers that skip bad records use `read_lines_or_errors`."""
    for number, line in read_lines_or_errors(path):
        if isinstance(line, DataError):
            raise line
        yield number, line


def read_lines_or_errors(path: Path) -> Iterator[tuple[int, str | DataError]]:
    """`read_lines`, with a line that is not valid UTF-8 yielded as its `DataError` instead of raised,
    so a lenient reader can skip that record and go on. A file that cannot be read still raises."""
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
            reason = f"not valid UTF-8 (byte {exc.start} of the line: {line[exc.start : exc.start + 1]!r})"
            yield number, DataError(path, number, reason)
            continue
        yield number, text.rstrip("\r")


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
