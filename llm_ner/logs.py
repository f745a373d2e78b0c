"""How llm-ner talks while it works: one logger per module under ``llm_ner``, and progress bars.

Library code never prints: it logs (``log = logging.getLogger(__name__)``). The command line installs one
handler on the ``llm_ner`` logger that writes each message as it is to stderr (`configure`): INFO and above by
default, WARNING and above with ``--quiet``, everything with ``--verbose``. A notebook that calls the library
without configuring logging sees warnings only (Python's last-resort handler). Progress bars (`progress_bar`)
show on a terminal only, never in a log file or a pipe, and not with ``--quiet``.
"""

from __future__ import annotations

import logging
import sys

ROOT = "llm_ner"
_HANDLER_NAME = "llm_ner.cli"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (a test or an application may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always the current sys.stderr


def configure(verbosity: int = 0) -> None:
    """Send the ``llm_ner`` loggers' messages to stderr: ``verbosity`` -1 warnings and errors only (``--quiet``),
    0 information too (the default), 1 and more debugging detail (``--verbose``)."""
    logger = logging.getLogger(ROOT)
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _Stderr()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False  # an application's root handler would print each line twice


def quiet() -> bool:
    """Whether only warnings and errors are wanted (``--quiet``)."""
    return not logging.getLogger(ROOT).isEnabledFor(logging.INFO)


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "sent"):
    """A tqdm bar over ``total`` items, shown only where it helps: ``enabled``, on a terminal, and not ``--quiet``."""
    from tqdm.auto import tqdm

    show = enabled and not quiet()
    return tqdm(total=total, desc=desc, unit=unit, disable=None if show else True, dynamic_ncols=True)


def quiet_libraries() -> None:
    """``--quiet``: no progress bars from transformers either (loading weights, writing shards)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
