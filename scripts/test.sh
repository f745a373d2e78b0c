#!/usr/bin/env bash
# The test command: lint, then the whole suite. The tests use the real CLUENER files from
# $LLM_NER_DATA (default ../shared/data/cluener beside the checkout, then data/cluener/); without
# them they run on the sample shipped in llm_ner/sample_data/ and skip, with the reason printed,
# the few that check facts of the real corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
if [ -z "${LLM_NER_DATA:-}" ] && [ -d ../shared/data/cluener ]; then
  export LLM_NER_DATA="$(cd ../shared/data/cluener && pwd)"
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
