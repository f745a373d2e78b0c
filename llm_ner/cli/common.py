"""Flags several commands share, and what ``--quiet`` does to the libraries."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..data import INPUT_FORMATS


def add_input_format(
    parser: argparse.ArgumentParser,
    flag: str = "--input-format",
    choices: Sequence[str] = INPUT_FORMATS,
    default: str = "auto",
    help: str | None = None,
) -> None:
    """The format of an input file (``auto``: guessed from the file)."""
    parser.add_argument(flag, default=default, choices=choices, **({"help": help} if help else {}))


def add_lenient(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--lenient``: skip bad records (counted and printed) instead of stopping at the first."""
    parser.add_argument("--lenient", action="store_true", **({"help": help} if help else {}))


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars (see `quiet_libraries`)."""
    parser.add_argument("--quiet", action="store_true")


def quiet_libraries() -> None:
    """--quiet: no progress bars from transformers either (loading weights, writing shards)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
