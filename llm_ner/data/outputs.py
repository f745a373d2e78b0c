"""Writing every command shares: the output rule and atomic writes.

`check_output_path` refuses, before anything is read or written, an output that could destroy an input
(the input itself, a folder holding it, a model folder's own files); `check_output_folder` refuses a
folder output that holds another model unless ``--force``. Writing goes to a temporary file beside the
target, renamed into place, so an error or a full disk never leaves a truncated file or destroys the
previous one; a full or read-only disk is one line naming the output (`naming_write_failures`), and the
temporaries of killed writers are removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import WRITE_FAILURES, UsageError

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
