"""Flags several commands share, and what ``--quiet`` does to the libraries."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..data import INPUT_FORMATS
from ..errors import UsageError
from ..run_dir import ADAPTER_CONFIG


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


def check_model_folder(model: str | None, option: str = "--model") -> None:
    """`UsageError` for a local folder that holds no model: transformers loads a folder with a
    ``config.json`` (or a LoRA adapter's, onto its base) and would stop on any other with a traceback.
    A name that is not a local folder (a hub id) is left to the loader."""
    folder = Path(model).expanduser() if model else None
    if (
        folder is not None
        and folder.is_dir()
        and not any((folder / n).is_file() for n in ("config.json", ADAPTER_CONFIG))
    ):
        raise UsageError(f"{option} {model}: no config.json there, so not a model folder")
