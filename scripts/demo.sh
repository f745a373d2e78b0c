#!/usr/bin/env bash
# The main job on the embedded default, CPU only (about 10 minutes on 2 cores):
#   convert CLUENER to chat instructions -> build a tiny random Qwen3 locally -> fine-tune it on all
#   of CLUENER train (configs/tiny-cpu.yaml) -> batch extraction of dev -> span-level evaluation.
# A from-scratch model this small proves the plumbing, not quality.
# Set LLM_NER_DATA to the folder with CLUENER's train.json and dev.json (default ../shared/data/cluener).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export LLM_NER_DATA="${LLM_NER_DATA:-$(cd .. && pwd)/shared/data/cluener}"
if [ ! -f "$LLM_NER_DATA/train.json" ] || [ ! -f "$LLM_NER_DATA/dev.json" ]; then
  echo "CLUENER not found in $LLM_NER_DATA: put train.json and dev.json there or set LLM_NER_DATA" >&2
  exit 1
fi
OUT=${OUT_DIR:-runs/demo}
mkdir -p "$OUT"
start=$(date +%s)
.venv/bin/llm-ner convert --input "$LLM_NER_DATA/train.json" --output "$OUT/train.jsonl" --prompt cluener_zh_short
.venv/bin/python train_sft.py --config configs/tiny-cpu.yaml \
  --train_file "$OUT/train.jsonl" --eval_file "$LLM_NER_DATA/dev.json" \
  --model_name_or_path "$OUT/tiny-qwen3" --output_dir "$OUT/model" "$@"
.venv/bin/llm-ner extract --model "$OUT/model" --input "$LLM_NER_DATA/dev.json" --output "$OUT/dev.pred.json" \
  --batch-size 64 --restart
.venv/bin/llm-ner evaluate --gold "$LLM_NER_DATA/dev.json" --pred "$OUT/dev.pred.json" --json "$OUT/scores.json"
echo "done in $(( $(date +%s) - start ))s: model $OUT/model, predictions $OUT/dev.pred.json, scores $OUT/scores.json"
