#!/usr/bin/env bash
# The main job on the embedded default, CPU only. Today: convert CLUENER train/dev into chat
# instructions, then score a prediction file against dev (here dev itself, a sanity check that
# must print 1.0 everywhere). Training, extraction and the baseline report join as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export LLM_NER_DATA="${LLM_NER_DATA:-$(cd .. && pwd)/shared/data/cluener}"
if [ ! -f "$LLM_NER_DATA/train.json" ]; then
  echo "CLUENER not found in $LLM_NER_DATA: put train.json and dev.json there or set LLM_NER_DATA" >&2
  exit 1
fi
OUT=${OUT_DIR:-runs/demo}
mkdir -p "$OUT"
.venv/bin/llm-ner convert --input "$LLM_NER_DATA/train.json" --output "$OUT/train.jsonl"
.venv/bin/llm-ner convert --input "$LLM_NER_DATA/dev.json" --output "$OUT/dev.jsonl"
.venv/bin/llm-ner evaluate --gold "$LLM_NER_DATA/dev.json" --pred "$LLM_NER_DATA/dev.json" --json "$OUT/scores.json"
echo "instruction data: $OUT/train.jsonl, $OUT/dev.jsonl; scores: $OUT/scores.json"
