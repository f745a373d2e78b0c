"""`llm-ner data`: find or download CLUENER2020, check it, print its folder."""

from __future__ import annotations

import argparse
import sys

from ..data_sources import CLUENER_URL
from ..options import positive_float


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="find or download CLUENER2020 and check it; prints the folder",
        description="Looks for train.json and dev.json in $LLM_NER_DATA, then in data/cluener/; else downloads "
        "the CLUE benchmark's CLUENER archive into data/cluener/. Every record is validated (FILE:LINE on the "
        "first bad one) and the sha256 compared with the known release. Prints the folder on stdout, so "
        "scripts can run DATA=$(llm-ner data cluener). Without network it says where to put the files.",
    )
    parser.add_argument("dataset", choices=("cluener",))
    parser.add_argument("--no-download", action="store_true", help="only look, do not download")
    parser.add_argument(
        "--allow-sample",
        action="store_true",
        help="if CLUENER is not available, print the small sample shipped with llm-ner (template sentences "
        "written for the project, not CLUENER) instead of failing",
    )
    parser.add_argument("--url", default=CLUENER_URL, help="archive to download (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="network timeout in seconds")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data_sources import locate_cluener

    located = locate_cluener(
        download=not args.no_download, allow_sample=args.allow_sample, url=args.url, timeout=args.timeout
    )
    if located.check is not None:
        print(f"CLUENER ({located.source}) {located.check.summary()}", file=sys.stderr)
    print(located.folder)
    return 0
