"""`llm-ner data`: find or download CLUENER2020, check it, print its folder."""

from __future__ import annotations

from ..data_sources import DataOptions
from .command import Command

COMMAND = Command(
    "data",
    help="find or download CLUENER2020 and check it; prints the folder",
    description="Looks for train.json and dev.json in $LLM_NER_DATA, then in data/cluener/; else downloads "
    "the CLUE benchmark's CLUENER archive into data/cluener/. Every record is validated (FILE:LINE on the "
    "first bad one) and the sha256 compared with the known release. Prints the folder on stdout, so "
    "scripts can run DATA=$(llm-ner data cluener). Without network it says where to put the files.",
    options=DataOptions,
    call="llm_ner.data_sources:find_data",
    show=print,
)
add_parser, run = COMMAND.add_parser, COMMAND.run
