#!/usr/bin/env bash
# The main job on the embedded default, CPU only:
#   find CLUENER -> convert it to chat instructions -> build a tiny random Qwen3 locally -> fine-tune it
#   (train_sft.py --config configs/tiny-cpu.yaml) -> batch extraction of dev -> train the BiLSTM-CRF
#   baseline -> side-by-side report with the published BERT-CRF figures.
# A from-scratch Qwen3 this small proves the plumbing, not quality.
#
#   bash scripts/quickstart.sh            # all of CLUENER train/dev, about 13 minutes on 2 cores
#   bash scripts/quickstart.sh --quick    # 2000 train / 300 dev sentences, 1 epoch, about 2 minutes
#   options: --out DIR (default runs/quickstart, runs/quickstart-quick), --restart (discard earlier results)
#
# Data: $LLM_NER_DATA, else ../shared/data/cluener beside the checkout, else data/cluener/, else a
# download of the CLUE archive (`llm-ner data cluener`); with none of them, the small template sample
# shipped in llm_ner/sample_data/ (not CLUENER, and said so). Rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 RESTART=0 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --restart) RESTART=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x .venv/bin/python ] || bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-runs/quickstart-quick} TRAIN_N=2000 DEV_N=300 EPOCHS=1 BASELINE_EPOCHS=5
else
  OUT=${OUT:-runs/quickstart} TRAIN_N="" DEV_N="" EPOCHS=2 BASELINE_EPOCHS=10
fi
start=$(date +%s)
step() { printf '\n== [%s/8] %s (%ss)\n' "$1" "$2" "$(( $(date +%s) - start ))"; }
done_step() { touch "$OUT/.done-$1"; }
is_done() { [ -f "$OUT/.done-$1" ] && echo "done in an earlier run, kept (--restart starts over)"; }

step 1 "data"
if [ -z "${LLM_NER_DATA:-}" ] && [ -f ../shared/data/cluener/dev.json ]; then
  export LLM_NER_DATA="$(cd ../shared/data/cluener && pwd)"
fi
DATA=$(llm-ner data cluener --allow-sample)
SOURCE="CLUENER2020"
case "$DATA" in */sample_data/*) SOURCE="the template sample shipped with llm-ner (not CLUENER)" ;; esac
# Earlier results are kept only if they came from the same data and mode.
SETTINGS="data=$DATA quick=$QUICK"
if [ "$RESTART" = 1 ] || [ "$(cat "$OUT/.settings" 2>/dev/null)" != "$SETTINGS" ]; then rm -rf "$OUT"; fi
mkdir -p "$OUT/data"
echo "$SETTINGS" > "$OUT/.settings"
TRAIN="$DATA/train.json" DEV="$DATA/dev.json"
if [ "$QUICK" = 1 ]; then  # the first N sentences of each split
  head -n "$TRAIN_N" "$DATA/train.json" > "$OUT/data/train.json"
  head -n "$DEV_N" "$DATA/dev.json" > "$OUT/data/dev.json"
  TRAIN="$OUT/data/train.json" DEV="$OUT/data/dev.json"
fi
echo "train $TRAIN ($(wc -l < "$TRAIN") sentences), dev $DEV ($(wc -l < "$DEV") sentences): $SOURCE"

step 2 "convert train to chat instructions"
llm-ner convert --input "$TRAIN" --output "$OUT/train.jsonl" --prompt cluener_zh_short

step 3 "build a tiny random Qwen3 with a locally trained tokenizer"
is_done tiny || { llm-ner tiny-model --arch qwen3 --out "$OUT/tiny-qwen3" --texts "$TRAIN" "$DEV" && done_step tiny; }

step 4 "fine-tune it: train_sft.py --config configs/tiny-cpu.yaml"
if ! is_done train; then
  resume=()
  last=$(ls -d "$OUT"/model/checkpoint-* 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$last" ] && resume=(--resume_from_checkpoint "$last") && echo "resuming from $last"
  python train_sft.py --config configs/tiny-cpu.yaml --train_file "$OUT/train.jsonl" --eval_file "$DEV" \
    --model_name_or_path "$OUT/tiny-qwen3" --output_dir "$OUT/model" --num_train_epochs "$EPOCHS" "${resume[@]}"
  done_step train
fi

step 5 "extract entities from dev (batched, resumable)"
llm-ner extract --model "$OUT/model" --input "$DEV" --output "$OUT/tiny-qwen3-sft.dev.pred.json" --batch-size 64

step 6 "train the BiLSTM-CRF baseline ($BASELINE_EPOCHS epochs, best epoch by dev F1)"
is_done baseline || {
  llm-ner baseline train --arch bilstm-crf --train "$TRAIN" --dev "$DEV" --out "$OUT/bilstm-crf" \
    --epochs "$BASELINE_EPOCHS" && done_step baseline
}

step 7 "BiLSTM-CRF predictions for dev"
llm-ner baseline predict --model "$OUT/bilstm-crf" --input "$DEV" --output "$OUT/bilstm-crf.dev.pred.json"

step 8 "side-by-side report"
published=() note="Data: $SOURCE."
if [ "$SOURCE" = "CLUENER2020" ]; then
  published=(--published eval/published_cluener.json)
  [ "$QUICK" = 1 ] && note="$note Quick run: trained on the first $TRAIN_N train sentences, scored on the first $DEV_N dev sentences; the published rows are on all of dev."
fi
note="$note tiny-qwen3-sft: a 1.2 M-parameter Qwen3 with random initial weights, fully fine-tuned for $EPOCHS epoch(s) on CPU (configs/tiny-cpu.yaml): it proves the plumbing, not quality. bilstm-crf: trained from scratch for $BASELINE_EPOCHS epochs, the epoch with the best dev F1 kept."
llm-ner report --gold "$DEV" --pred tiny-qwen3-sft="$OUT/tiny-qwen3-sft.dev.pred.json" \
  --pred bilstm-crf="$OUT/bilstm-crf.dev.pred.json" "${published[@]}" --out "$OUT/report" --note "$note"

echo
awk '/^## Summary/ {p = 1; print; next} p && /^\|/ {print; t = 1; next} p && t {exit}' "$OUT/report/report.md"
echo
echo "done in $(( $(date +%s) - start ))s on $SOURCE"
echo "report: $OUT/report/report.md"
echo "chart:  $OUT/report/f1_per_class.png"
