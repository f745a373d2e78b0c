"""Packages whose public names are imported on first use (PEP 562): a package that gathers heavy modules
(torch, TRL) can be imported by the command line, and by its own light modules, without loading them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_attributes(package: str, homes: Mapping[str, str], modules=()) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``homes`` maps a public name to the submodule that defines it,
    ``modules`` names submodules reachable as attributes; a name is imported once, on first use."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        if name in homes:
            value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
