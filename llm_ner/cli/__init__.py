"""The `llm-ner` command line: one module per subcommand, each with ``add_parser(subparsers)``
(its flags, most generated from the option dataclass the library takes) and ``run(args) -> int``
(its checks, then one call of a library function). `main` builds the parser and dispatches."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
