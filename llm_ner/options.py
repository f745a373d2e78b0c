"""Typed options: dataclasses that own their command-line flags and defaults.

The pattern is vLLM's ``EngineArgs``: a library entry point takes a dataclass (`ExtractOptions`,
`ServeLimits`, `BaselineConfig`, ...), never an argparse ``Namespace``. Each field that is also a
flag is declared with `option(...)`, which keeps its help, type and choices beside its default, so
a default is written once and the command line is generated from the dataclass:

    @dataclass
    class Limits(CliOptions):
        max_batch: int = option(32, type=positive_int, help="texts per batch (default: %(default)s)")

    Limits.add_cli_args(parser)          # --max-batch
    limits = Limits.from_cli_args(args)  # Limits(max_batch=...)

The argparse types below check numbers while the command line is parsed, before any model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T", bound="CliOptions")


def positive_int(value: str) -> int:
    """An integer >= 1 (batch sizes, limits, counts)."""
    number = _number(value, int)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    """An integer >= 0."""
    number = _number(value, int)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value!r}")
    return number


def non_negative_float(value: str) -> float:
    """A finite number >= 0 (resources per worker)."""
    number = _number(value, float)
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """A finite number > 0 (timeouts, learning rates)."""
    number = _number(value, float)
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value!r}")
    return number


def port_number(value: str) -> int:
    """A TCP port, 1-65535 (an argparse type)."""
    number = positive_int(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {value!r}")
    return number


def fraction(value: str) -> float:
    """A number from 0 to 1 (a share of sentences or answers)."""
    number = _number(value, float)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {value!r}")
    return number


def _number(value: str, kind: type):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {value!r}") from None


_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|npu)(:\d+)?$")


def device_name(value: str) -> str:
    """A torch device: cpu, cuda, cuda:N (also mps, xpu, npu)."""
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"not a device: {value!r} (cpu, cuda, cuda:1, mps)")
    return value


_CLI = "llm_ner.cli"  # the field-metadata key that marks a field as a flag


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None = None,
    flag: str | None = None,
    type: Callable[[str], Any] | None = None,
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
    required: bool = False,
    action: str | None = None,
    nargs: str | int | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a command-line flag (``--field-name`` unless ``flag`` says; a ``flag``
    without a leading dash is a positional argument).

    A ``bool`` field whose default is False becomes a ``store_true`` switch; ``required`` flags
    have no default on the command line (the dataclass may still have one for library callers).
    """
    cli = {
        "help": help,
        "flag": flag,
        "type": type,
        "choices": tuple(choices) if choices is not None else None,
        "metavar": metavar,
        "required": required,
        "action": action,
        "nargs": nargs,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_CLI: cli})
    return dataclasses.field(default=default, metadata={_CLI: cli})


class CliOptions:
    """Mixin for option dataclasses: `add_cli_args` declares their flags, `from_cli_args` reads them."""

    @classmethod
    def cli_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if _CLI in f.metadata]

    @classmethod
    def add_cli_args(
        cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup, only: Sequence[str] | None = None
    ) -> None:
        """Add the flags of this dataclass (``only``: these fields, in this order) to ``parser``."""
        fields = {f.name: f for f in cls.cli_fields()}
        for name in only if only is not None else list(fields):
            f = fields[name]
            meta = f.metadata[_CLI]
            flag = meta["flag"] or "--" + f.name.replace("_", "-")
            positional = not flag.startswith("-")
            kwargs: dict[str, Any] = {"help": meta["help"]} if positional else {"dest": f.name, "help": meta["help"]}
            action = meta["action"] or ("store_true" if f.default is False else None)
            if action:
                kwargs["action"] = action
            if action in (None, "append", "extend"):  # an option that takes values
                if meta["type"] is not None:
                    kwargs["type"] = meta["type"]
                if meta["choices"] is not None:
                    kwargs["choices"] = meta["choices"]
                elif flag.startswith("--") and action is None:  # argparse would show the dest; show the flag's name
                    kwargs["metavar"] = flag[2:].replace("-", "_").upper()
                if meta["metavar"] is not None:
                    kwargs["metavar"] = meta["metavar"]
                if meta["nargs"] is not None:
                    kwargs["nargs"] = meta["nargs"]
            if meta["required"] and not positional:
                kwargs["required"] = True
            elif f.default is not dataclasses.MISSING and action in (None, "append", "extend"):
                kwargs["default"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                kwargs["default"] = f.default_factory()
            if kwargs["help"] is None:
                del kwargs["help"]
            parser.add_argument(flag, **kwargs)

    @classmethod
    def from_cli_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
        """An instance from the parsed command line: every flag this dataclass declared (flags the
        parser did not get keep the dataclass default), then ``overrides``."""
        values = {f.name: getattr(args, f.name) for f in cls.cli_fields() if hasattr(args, f.name)}
        return cls(**{**values, **overrides})  # type: ignore[call-arg]
