"""`llm-ner serve`: extraction over HTTP with dynamic batching."""

from __future__ import annotations

import argparse

from ..extraction.options import ModelOptions
from ..serving.options import ServeLimits, ServeOptions, ServeRequest


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve extraction over HTTP (POST /extract, GET /health, a demo page at /)",
        description='Loads the model once and answers POST /extract {"texts": [...]} with entities (character '
        "offsets, end exclusive), labels and parse counters. Requests arriving together share one batched "
        "generate (dynamic batching). Full queue -> 503 with Retry-After; too large -> 413; bad JSON -> 400. "
        "GET / is a page that highlights the entities of pasted text. With --label-studio it is also a Label Studio "
        "ML backend (pre-annotations with scores).",
    )
    ModelOptions.add_cli_args(parser)
    ServeOptions.add_cli_args(parser, only=["host", "port"])
    ServeLimits.add_cli_args(parser)
    ServeOptions.add_cli_args(parser, only=["log_level"])
    access = parser.add_argument_group(
        "access",
        "Any web page open in the user's browser can send requests to a local server. So POST /extract takes "
        "only Content-Type application/json (415 otherwise), a request naming another Host or coming from another "
        "web site (Origin) gets 403, and with an API key every path but the page at / needs it (401).",
    )
    ServeOptions.add_cli_args(access, only=["allowed_origins", "api_key", "openapi"])
    label_studio = parser.add_argument_group(
        "Label Studio",
        "Pre-annotation for Label Studio's community edition: the model as an ML backend. Connect it in the "
        "project's Settings > Model with the URL below; Label Studio calls it from its server, so that Host must "
        "be allowed (--allowed-origins) and, with an API key, the connection uses Basic Authentication with the "
        "key as password.",
    )
    ServeOptions.add_cli_args(label_studio, only=["label_studio"])
    return parser


def run(args: argparse.Namespace) -> int:
    from ..serving.app import run_server

    request = ServeRequest.from_cli_args(args)
    return run_server(request.model, request.serve, request.limits)
