"""Batch extraction, the same as `llm-ner extract`; the form to use under accelerate:

accelerate launch --num_processes 2 scripts/extract.py --adapter runs/x --input dev.json --output pred.json
"""

import sys

from llm_ner.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
