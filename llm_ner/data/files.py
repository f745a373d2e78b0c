"""Reading every format and stage shares: one input opener and UTF-8 lines with the failing line named.

Reading goes through `read_input_chunks`: a path is opened once; a pipe, FIFO or ``/dev/stdin`` is read
once into a temporary spool that every later read of the same path in this command reads (format sniffing,
then parsing, then hashing); character devices (``/dev/zero``) and inputs over `max_input_bytes` are
refused with one line; reads come in bounded chunks, so SIGTERM and Ctrl-C end any read. Writing lives in
`outputs`.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError, UsageError

MAX_INPUT_BYTES_ENV = "LLM_NER_MAX_INPUT_BYTES"
DEFAULT_MAX_INPUT_BYTES = 4 << 30
# Small enough that a signal handler runs between reads of an endless input, large enough to be fast.
_CHUNK_BYTES = 1 << 20
_BYTE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

_bound_override: int | None = None
# Spooled pipes and FIFOs of this process: (absolute path, st_dev, st_ino) -> the spool file. The path is
# part of the key because a FIFO removed and made again (tests, a rerun) may get the same inode number.
_spools: dict[tuple[str, int, int], Path] = {}
_spool_dir: Path | None = None
_spool_lock = threading.Lock()


def parse_byte_count(text: str) -> int:
    """A byte count such as ``4096``, ``512M`` or ``4G`` (binary units; a trailing ``B``/``iB`` is allowed).
    ValueError when it is not one."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if found is None:
        raise ValueError(f"{text!r} is not a byte count (e.g. 1000000, 512M, 4G)")
    return int(found.group(1)) * _BYTE_UNITS[found.group(2).upper()]


def max_input_bytes() -> int:
    """The largest input a reader accepts: ``llm-ner --max-input-bytes`` (`input_scope`), else
    ``$LLM_NER_MAX_INPUT_BYTES``, else 4 GiB. A bad variable is a `UsageError`."""
    if _bound_override is not None:
        return _bound_override
    raw = os.environ.get(MAX_INPUT_BYTES_ENV)
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        return parse_byte_count(raw)
    except ValueError as exc:
        raise UsageError(f"{MAX_INPUT_BYTES_ENV}: {exc}") from None


@contextmanager
def input_scope(max_bytes: int | None = None) -> Iterator[None]:
    """One command's reading: ``max_bytes`` (None: the variable or default) bounds every input, and the
    spools of pipes read meanwhile are removed at the end, on an error or SIGTERM too."""
    global _bound_override
    previous = _bound_override
    if max_bytes is not None:
        _bound_override = max_bytes
    try:
        yield
    finally:
        _bound_override = previous
        remove_spools()


def remove_spools() -> None:
    """Remove the spool files of the pipes read so far (`input_scope` does this; also at exit)."""
    global _spool_dir
    with _spool_lock:
        _spools.clear()
        if _spool_dir is not None:
            shutil.rmtree(_spool_dir, ignore_errors=True)
            _spool_dir = None


atexit.register(remove_spools)


def _too_large(path: Path, limit: int) -> DataError:
    return DataError(
        path,
        None,
        f"larger than the input limit of {limit} bytes; raise it with `llm-ner --max-input-bytes N` "
        f"or {MAX_INPUT_BYTES_ENV}=N if the file is meant to be this large",
    )


def _input_kind(path: Path) -> os.stat_result:
    """The stat of an input, or the `DataError` refusing it: missing, a folder, a device or a socket."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise DataError(path, None, "cannot read file: it is a folder")
    if stat.S_ISCHR(mode) and info.st_rdev != os.stat(os.devnull).st_rdev:
        # /dev/zero and /dev/urandom never end; a terminal waits for typing: neither is a data file
        raise DataError(
            path, None, "is a character device (such as /dev/zero or a terminal), not a file: pass a file or a pipe"
        )
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        raise DataError(path, None, "is not a file or a pipe (a socket or block device): pass a file")
    return info


def _chunks_of(path: Path, limit: int) -> Iterator[bytes]:
    """The bytes of ``path`` in chunks of at most 1 MiB from one open(); `DataError` past ``limit`` bytes."""
    total = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                total += len(chunk)
                if total > limit:
                    raise _too_large(path, limit)
                yield chunk
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc


def _spool(path: Path, info: os.stat_result, limit: int) -> Path:
    """The spool file holding the whole of the pipe or FIFO ``path``, read from it the first time."""
    global _spool_dir
    key = (os.path.abspath(path), info.st_dev, info.st_ino)
    with _spool_lock:
        if key in _spools:
            return _spools[key]
        if _spool_dir is None:
            _spool_dir = Path(tempfile.mkdtemp(prefix="llm-ner-inputs-"))
        fd, name = tempfile.mkstemp(dir=_spool_dir, prefix="pipe-")
        try:
            with os.fdopen(fd, "wb") as spool:
                for chunk in _chunks_of(path, limit):
                    spool.write(chunk)
        except BaseException:  # SIGTERM and Ctrl-C too: no half pipe left behind
            Path(name).unlink(missing_ok=True)
            raise
        _spools[key] = Path(name)
        return Path(name)


def read_input_chunks(path: str | Path) -> Iterator[bytes]:
    """The bytes of an input file in chunks of at most 1 MiB: the one way readers open their inputs.

    A regular file is opened once per call; a pipe, FIFO, ``/dev/stdin`` or ``/dev/fd/N`` is read once per
    command into a spool that later calls for the same path read. Refused with a `DataError` (one line): a
    missing file, a folder, a character device other than ``/dev/null``, and an input over `max_input_bytes`.
    Between chunks Python's signal handlers run, so SIGTERM ends even an endless read."""
    path = Path(path)
    info = _input_kind(path)
    limit = max_input_bytes()
    if stat.S_ISREG(info.st_mode) and info.st_size > limit:
        raise _too_large(path, limit)
    if stat.S_ISFIFO(info.st_mode):
        spool = _spool(path, info, limit)
        try:
            with open(spool, "rb") as handle:
                while chunk := handle.read(_CHUNK_BYTES):
                    yield chunk
        except OSError as exc:
            raise DataError(path, None, f"cannot read the copy of this pipe: {exc.strerror or exc}") from exc
        return
    yield from _chunks_of(path, limit)  # a file that grows while read is still held to the limit


def read_input_bytes(path: str | Path) -> bytes:
    """The whole of an input file (`read_input_chunks`: opened once, bounded, devices refused)."""
    return b"".join(read_input_chunks(path))


def input_lines(path: str | Path) -> Iterator[bytes]:
    """The raw lines of an input file, split at ``\n`` only and without it, a leading BOM dropped; a file
    ending in a newline ends with an empty line. Lines are whole however the chunks fall (a multibyte
    character split between two chunks is joined again)."""
    pieces: list[bytes] = []
    first = True
    for chunk in read_input_chunks(path):
        if b"\n" not in chunk:
            pieces.append(chunk)
            continue
        head, *middle, tail = chunk.split(b"\n")
        pieces.append(head)
        for line in (b"".join(pieces), *middle):
            if first:
                line = line.removeprefix(b"\xef\xbb\xbf")
                first = False
            yield line
        pieces = [tail]
    line = b"".join(pieces)
    yield line.removeprefix(b"\xef\xbb\xbf") if first else line


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
    for number, line in enumerate(input_lines(path), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not valid UTF-8 (byte {exc.start} of the line: {line[exc.start : exc.start + 1]!r})"
            yield number, DataError(path, number, reason)
            continue
        yield number, text.rstrip("\r")
