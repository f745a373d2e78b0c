"""The errors a user can act on, and the one rule that turns an exception into an exit status.

Every expected failure is an `LlmNerError` (or one of the library errors `user_facing_error`
recognises): the CLI prints its message on one line and exits with its ``exit_code``; anything
else is a bug and keeps its traceback. This module imports nothing of llm-ner, so any stage can
raise these without import cycles (and the CLI can classify an error without loading torch).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class LlmNerError(Exception):
    """Base of the expected errors: one line for the user, exit status ``exit_code``."""

    exit_code = 1


class UsageError(LlmNerError, ValueError):
    """A bad combination of arguments or settings: printed as one line, no traceback."""

    exit_code = 2


class DataError(LlmNerError, ValueError):
    """A bad input record or file; the message starts with ``FILE:LINE:``."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ResumeMismatch(LlmNerError, ValueError):
    """Earlier results that were not made by this run's settings and input; the message says what differs."""


class ServerError(LlmNerError, OSError):
    """The server could not be reached, or refused or failed a request after all retries."""


class DependencyVersionError(LlmNerError, ValueError):
    """An installed library is older than llm-ner's floor (or missing)."""


# Why a write failed, by errno, and what the user can do about it (`user_facing_error`'s one line).
WRITE_FAILURES = {
    errno.ENOSPC: "free some space or choose another output on another disk",
    errno.EDQUOT: "free some space under your quota or choose another output on another disk",
    errno.EROFS: "choose another output on a writable disk",
    errno.EACCES: "check the permissions of the file and its folder, or choose another path",
    errno.EPERM: "check the permissions of the file and its folder, or choose another path",
}

# Libraries that raise OSError for a model that is not there (hub id or local directory).
_MODEL_LOADERS = ("transformers", "huggingface_hub", "peft")


def user_facing_error(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an expected failure; None for a programming error."""
    import http.client
    import traceback
    import urllib.error

    if isinstance(exc, LlmNerError):
        return exc.exit_code, str(exc)
    if isinstance(exc, (ConnectionError, TimeoutError, urllib.error.URLError, http.client.HTTPException)):
        return 1, f"cannot reach the server: {exc}"
    if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
        # a full or read-only disk, or permissions: the path (atomic writes name their target), what to do, and
        # what the writer added (`add_note`: the previous output unchanged, a resumable run's finished part kept)
        where = f"{exc.filename}: " if exc.filename else ""
        notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
        return 1, f"{where}{exc.strerror or exc}; {WRITE_FAILURES[exc.errno]}{notes}"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return 1, f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)
    # transformers/peft raise a plain OSError for a model that is neither a local directory nor on the hub
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, OSError) and any(
        f"{os.sep}{name}{os.sep}" in f.filename for f in frames for name in _MODEL_LOADERS
    ):
        return 1, str(exc).splitlines()[0] if str(exc) else repr(exc)
    return None
