#!/usr/bin/env bash
# The test command: lint, then the whole suite against the real CLUENER files.
# LLM_NER_DATA defaults to ../shared/data/cluener beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export LLM_NER_DATA="${LLM_NER_DATA:-$(cd .. && pwd)/shared/data/cluener}"
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
