"""The evaluation entry point behind `llm-ner report` (same arguments):

    python eval/report.py --gold dev.json --pred qwen=pred.json --pred bilstm=b.json \
        --published eval/published_cluener.json --out runs/report

`eval/published_cluener.json` holds the published CLUENER dev figures of the seed notes.
"""

import sys

from llm_ner.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
