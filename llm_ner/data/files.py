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


def check_output_path(
    output: str | Path,
    inputs: dict[str, str | Path | None],
    option: str = "--output",
    writes_folder: bool = False,
) -> None:
    """Refuse (`UsageError`, before anything is read or written) an output that could destroy an input.

    Every writing command calls this beside its parser with all the paths it reads (``{"--input":
    path}``; None is skipped, and a path that does not exist, such as a hub id, is only compared). Refused:

    - the output is an input: the same path once symlinks are resolved, or the same file (hard link);
    - the output contains an input (an output folder, or a file output that names a folder, holding an input);
    - ``writes_folder`` (the command writes a folder, e.g. `llm-ner merge --out`): the output lies inside an
      input folder. A file output inside an input folder is fine (``--output runs/model/dev.pred.json``).
    """
    out = Path(output).expanduser().resolve()
    for name, value in inputs.items():
        if value is None:
            continue
        source = Path(value).expanduser().resolve()
        kind = "folder" if source.is_dir() else "file"
        if out == source or (out.exists() and source.exists() and os.path.samefile(out, source)):
            raise UsageError(f"{option} {output} is the {name} {kind}; writing it would destroy the input")
        if not source.exists():
            continue  # nothing inside to destroy (a hub id; a missing input is its reader's error)
        if source.is_relative_to(out):
            raise UsageError(
                f"{option} {output} contains the {name} {kind} {value}; writing it could destroy the input"
            )
        if writes_folder and source.is_dir() and out.is_relative_to(source):
            raise UsageError(f"{option} {output} is inside the {name} folder {value}; write the new folder elsewhere")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` on success, removed on any error
    (``BaseException``: also on Ctrl-C, and on SIGTERM where the CLI turns it into an exception, see
    `llm_ner.cli.main`), so an interrupted write leaves neither a hidden file nor a damaged ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    try:
        os.close(fd)
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
