"""What a result was made with, compared before it is reused: identities of input files and model folders,
and the refusals of a resume whose settings differ, in the same words for every command that resumes
(`llm-ner extract`, `llm-ner train`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .data.files import read_input_chunks
from .errors import ResumeMismatch


def file_identity(path: Path, max_hash_bytes: int = 64 << 20) -> str:
    """sha256 of a small file or a pipe (read once: its readers read the same spool); size and modification
    time of a large file (weights of a real model)."""
    stat = path.stat()
    if not path.is_file() or stat.st_size <= max_hash_bytes:
        digest = hashlib.sha256()
        for chunk in read_input_chunks(path):
            digest.update(chunk)
        return "sha256:" + digest.hexdigest()[:16]
    return f"size:{stat.st_size} mtime_ns:{stat.st_mtime_ns}"


def directory_identity(path: str | None) -> str | None:
    """A content identity of a local model or adapter directory (None for a hub id)."""
    if not path or not Path(path).is_dir():
        return None
    names = ("*.json", "*.safetensors", "*.bin", "*.pt")
    files = sorted({f for pattern in names for f in Path(path).glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}={file_identity(f)}\n".encode())
    return "sha256:" + digest.hexdigest()[:16]


def settings_differences(earlier: dict, now: dict) -> list[str]:
    """Key by key, how two run fingerprints differ: what a refused resume names."""
    return [
        f"{key}: {earlier.get(key)!r} then, {now.get(key)!r} now"
        for key in sorted(set(earlier) | set(now))
        if earlier.get(key) != now.get(key)
    ]


def made_with_other_settings(results: Path, earlier: dict, now: dict, hint: str) -> ResumeMismatch | None:
    """The refusal of earlier ``results`` whose fingerprint ``earlier`` differs from this run's (None: equal);
    ``hint``: the ways out of the command that refuses (training's differ)."""
    differences = settings_differences(earlier, now)
    if not differences:
        return None
    return ResumeMismatch(f"{results} was made with other settings ({'; '.join(differences)}); {hint}")


def without_run_record(results: Path, run_file: Path, command: str, hint: str) -> ResumeMismatch:
    """The refusal of earlier ``results`` that no run record of ``command`` describes."""
    return ResumeMismatch(
        f"{results} exists but was not written by `{command}` with a run record ({run_file} missing or "
        f"unreadable); {hint}"
    )
