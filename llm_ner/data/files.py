"""File IO every format and stage shares: one input opener, UTF-8 lines with the failing line named, and
atomic writes.

Reading goes through `read_input_chunks`: a path is opened once; a pipe, FIFO or ``/dev/stdin`` is read
once into a temporary spool that every later read of the same path in this command reads (format sniffing,
then parsing, then hashing); character devices (``/dev/zero``) and inputs over `max_input_bytes` are
refused with one line; reads come in bounded chunks, so SIGTERM and Ctrl-C end any read.

Writing goes to a temporary file beside the target, renamed into place, so an error or a full disk
never leaves a truncated file or destroys the previous one.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import WRITE_FAILURES, DataError, UsageError

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


# Files a model, adapter or baseline folder is loaded from (transformers, peft, tokenizers, llm-ner's run record,
# prompt copy and baseline files). `llm_ner.training.run_dir` and `llm_ner.baselines.training` name them too; this
# module imports neither (they import it).
MODEL_FILE_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.onnx", "*.h5", "*.msgpack", "*.model",
    "*.tiktoken", "*.index.json", "*config.json", "*config.yaml", "tokenizer*", "vocab*", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "chat_template*", "llm_ner.json", "prompt.yaml",
    "baseline.json", "history.json", "trainer_state.json", "README.md",
)  # fmt: skip


def is_model_file(path: Path, folder: Path) -> bool:
    """Whether ``path`` (inside ``folder``) is, or may be, one of the files the model of ``folder`` is loaded
    from: named like one (`MODEL_FILE_PATTERNS`), or anywhere in a subfolder (checkpoint-N/, a baseline's encoder/)."""
    relative = path.relative_to(folder)
    return len(relative.parts) > 1 or any(fnmatch.fnmatch(relative.name, p) for p in MODEL_FILE_PATTERNS)


def holds_model_run(folder: Path) -> bool:
    """Whether ``folder`` holds (part of) a model, adapter, baseline or training run: a model file at its top."""
    return folder.is_dir() and any(
        (entry.is_file() and is_model_file(entry, folder)) or (entry.is_dir() and entry.name.startswith("checkpoint-"))
        for entry in folder.iterdir()
    )


def check_output_path(
    output: str | Path,
    inputs: dict[str, str | Path | None],
    option: str = "--output",
    writes_folder: bool = False,
) -> None:
    """Refuse (`UsageError`, before anything is read, loaded or written) an output that could destroy an input.

    Every writing command calls this before its work with EVERY path it reads (``{"--input": path, "--model":
    folder, "--shots-from": file, ...}``; None is skipped, and a path that does not exist, such as a hub id or a
    prompt name, is only compared). Refused:

    - the output is an input: the same path once symlinks are resolved, or the same file (hard link);
    - the output contains an input (an output folder, or a file output that names a folder, holding an input);
    - ``writes_folder`` (the command writes a folder, e.g. `llm-ner merge --out`): the output lies inside an
      input folder;
    - a file output inside an input folder that would replace one of the files the folder's model is loaded from
      (`is_model_file`: ``config.json``, weights, tokenizer, adapter and run-record files, anything in a subfolder).
      A new file there is fine, and so is replacing an earlier prediction file: ``--output runs/model/dev.pred.json``
      (the README's pattern) can be rerun and resumed.
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
        if not (source.is_dir() and out.is_relative_to(source)):
            continue
        if writes_folder:
            raise UsageError(f"{option} {output} is inside the {name} folder {value}; write the new folder elsewhere")
        if (out.exists() or out.is_symlink()) and is_model_file(out, source):
            raise UsageError(
                f"{option} {output} would replace a file of the {name} folder {value} (its model needs it); "
                "choose another file name"
            )


def check_output_folder(out: str | Path, option: str = "--out", force: bool = False) -> bool:
    """Refuse (`UsageError`, before anything is loaded) an output folder a command cannot write cleanly: an existing
    file, a folder holding another model's run (unless ``force``: the caller then clears it with
    `clear_output_folder` before writing, so old and new files never mix), a folder holding other files (never
    cleared: llm-ner removes only what it recognises as a model run). True when there is a run to clear."""
    folder = Path(out)
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise UsageError(f"{option} {out} exists and is not a folder; {option} names the folder to write")
    if not folder.is_dir() or not any(folder.iterdir()):
        return False
    if not holds_model_run(folder):
        raise UsageError(
            f"{option} {out} holds files that are not a model's; choose a new or empty folder (nothing was removed)"
        )
    if not force:
        raise UsageError(
            f"{option} {out} already holds a model (config, weights, adapter or run record); --force replaces it "
            "whole, or choose another folder"
        )
    return True


def clear_output_folder(out: str | Path) -> None:
    """Empty ``out`` (a folder `check_output_folder` accepted with ``force``), keeping the folder itself."""
    for entry in Path(out).iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# The temporary names of `atomic_path`: ``.NAME.<pid>-<host>.XXXXXXXX<suffix>``. The writer's process id lets a
# later write of NAME remove what a killed writer left (a process that is gone), never a live writer's file; the
# host's tag keeps writers on other machines of a shared file system out of that judgement.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` on success, removed on any error
    (``BaseException``: also on Ctrl-C, and on SIGTERM where the CLI turns it into an exception, see
    `llm_ner.cli.main`), so an interrupted write leaves neither a hidden file nor a damaged ``path``.

    Temporary files of ``path`` left by killed writers (SIGKILL, a power cut) are removed first. A write that
    fails for want of space, a read-only disk or permissions (`llm_ner.errors.WRITE_FAILURES`) is raised as
    an OSError naming ``path`` (not the temporary name), which the CLI prints as one line."""
    path = Path(path)
    kept = f"{path} is unchanged" if path.exists() else None
    with naming_write_failures(path, kept, temporary=path.parent / f".{path.name}."):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=path.suffix, dir=path.parent)
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


@contextmanager
def naming_write_failures(
    path: str | Path, note: str | None = None, temporary: str | Path | None = None
) -> Iterator[None]:
    """Re-raise a write failure of the block (`llm_ner.errors.WRITE_FAILURES`: a full or read-only disk,
    permissions) naming ``path`` where it names no file (a full disk found by ``write()`` or ``close()``) or a
    temporary one (a name starting with ``temporary``: the user never named it), with ``note`` (what was kept,
    what to rerun) added: the CLI prints both on its one line."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            raise
        temporary_name = temporary is not None and str(exc.filename).startswith(str(temporary))
        error = exc if exc.filename and not temporary_name else OSError(exc.errno, exc.strerror, str(path))
        if note:
            error.add_note(note)
        if error is exc:
            raise
        raise error from exc


def temporary_prefix(path: Path) -> str:
    """The start of the name of a temporary file or folder (beside ``path``) this process writes ``path`` through:
    `remove_stale_temporaries` removes it once this process is gone."""
    return f".{path.name}.{os.getpid()}-{_HOST_TAG}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files and folders (`temporary_prefix`) made for ``path`` by processes of this host
    that are gone (killed before they could clean up); the ones removed. A live writer's are kept."""
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed  # an unreadable folder: the write itself will say so
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid, _, host = entry.name[len(prefix) :].partition(".")[0].partition("-")
        if not pid.isdigit() or host != _HOST_TAG or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):  # another writer may remove it first
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


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
