"""`llm-ner`: the top-level parser over the command modules, and the dispatch that turns expected
errors into one line and an exit status."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .. import __version__, logs
from ..data.files import MAX_INPUT_BYTES_ENV, input_scope, parse_byte_count
from ..errors import user_facing_error
from . import (
    baseline,
    convert,
    curve,
    data,
    evaluate,
    export,
    export_model,
    extract,
    merge,
    model_card,
    quickstart,
    report,
    select,
    serve,
    tiny_model,
    train,
)

log = logging.getLogger(__name__)

# In the order `llm-ner --help` lists them.
COMMANDS = (
    quickstart,
    convert,
    evaluate,
    train,
    data,
    tiny_model,
    extract,
    serve,
    baseline,
    report,
    export,
    select,
    curve,
    merge,
    export_model,
    model_card,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; a parsed command line's ``run(args)`` runs it."""
    parser = argparse.ArgumentParser(
        prog="llm-ner",
        description="Chinese NER with fine-tuned LLMs: convert data to chat instructions, "
        "train, extract, evaluate and compare with BERT/BiLSTM-CRF baselines.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=-1,
        default=0,
        help="warnings and errors only, no progress bars",
    )
    talk.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=1, help="debugging detail too"
    )  # fmt: skip
    parser.add_argument(
        "--max-input-bytes",
        type=_byte_count,
        metavar="N",
        help=f"refuse input files larger than N bytes (512M, 4G; default ${MAX_INPUT_BYTES_ENV} or 4G); "
        "pipes and FIFOs are read once, character devices such as /dev/zero refused",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(run=command.run)
    return parser


def _byte_count(text: str) -> int:
    try:
        return parse_byte_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler, a container stopping) as an exception: ``finally`` blocks and
    context managers run, so an atomic write removes its temporary file and a resumable extraction keeps
    its finished batches, as with Ctrl-C."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while a command runs (main thread only; the old handler is put back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (default: ``sys.argv[1:]``); the exit status."""
    args = build_parser().parse_args(argv)
    logs.configure(args.verbosity)
    try:
        with _sigterm_raises(), input_scope(args.max_input_bytes):
            return args.run(args)
    except BrokenPipeError:  # output piped into `head`
        return 1
    except Terminated:
        log.error("terminated (SIGTERM)")
        return 128 + signal.SIGTERM  # 143, as the shell reports a process killed by SIGTERM
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:
        expected = user_facing_error(exc)
        if expected is None:
            raise  # a bug: keep the traceback
        code, message = expected
        log.error(f"error: {message}")
        return code
