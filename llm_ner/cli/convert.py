"""`llm-ner convert`: an NER file -> chat instructions (TRL prompt-completion JSON lines)."""

from __future__ import annotations

from ..prompting import ConvertOptions
from .command import Command

COMMAND = Command(
    "convert",
    help="turn CLUENER/BIO data into chat instructions (TRL prompt-completion JSON lines)",
    description="Convert an NER file into JSON lines {id, prompt: [system, user], "
    "completion: [assistant]} for TRL's SFTTrainer, and OUTPUT.meta.json beside them recording the "
    "prompt (a full copy) and answer format, which training adopts. Bad records stop the run with "
    "FILE:LINE: reason unless --lenient.",
    options=ConvertOptions,
    call="llm_ner.prompting:convert",
)
add_parser, run = COMMAND.add_parser, COMMAND.run
