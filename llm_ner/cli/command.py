"""`Command`: a command whose flags are one options dataclass and whose work is one library call."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..options import CliOptions


@dataclass(frozen=True)
class Command:
    """``llm-ner NAME``: ``options`` declares its flags; ``call`` ("module:function", imported when the command
    runs, so the parser needs none of its imports) takes the parsed options; ``show`` prints what it returns."""

    name: str
    help: str
    description: str
    options: type[CliOptions]
    call: str
    show: Callable[[Any], None] | None = None

    def add_parser(self, subparsers) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description)
        self.options.add_cli_args(parser)
        return parser

    def run(self, args: argparse.Namespace) -> int:
        module, function = self.call.split(":")
        result = getattr(importlib.import_module(module), function)(self.options.from_cli_args(args))
        if self.show is not None:
            self.show(result)
        return 0
