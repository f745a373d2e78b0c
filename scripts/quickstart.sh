#!/usr/bin/env bash
# The main job on the embedded default, CPU only:
#   find CLUENER -> convert it to chat instructions -> build a tiny random Qwen3 locally -> fine-tune it
#   (train_sft.py --config configs/tiny-cpu.yaml) -> batch extraction of dev -> train the BiLSTM-CRF
#   baseline -> side-by-side report with the published BERT-CRF figures.
# A from-scratch Qwen3 this small proves the plumbing, not quality.
#
#   bash scripts/quickstart.sh            # all of CLUENER train/dev, about 9 minutes on 2 cores
#   bash scripts/quickstart.sh --quick    # 2000 train / 300 dev sentences, 1 epoch, about 2 minutes
#   bash scripts/quickstart.sh --model Qwen/Qwen2.5-0.5B-Instruct   # a real model (hub id or local directory):
#       LoRA with the matching configs/*.yaml (or --config FILE), on the GPU when there is one
#   options: --out DIR (default runs/quickstart[-MODEL][-quick], e.g. runs/quickstart-Qwen2.5-0.5B-Instruct),
#   --restart (discard earlier results; a folder holding a run with other settings is refused without it),
#   --train-n N / --dev-n N (first N sentences), --dry-run (print the plan and stop),
#   -- ARGS... (passed on to train_sft.py)
#
# Data: $LLM_NER_DATA, else ../shared/data/cluener beside the checkout, else data/cluener/, else a
# download of the CLUE archive (`llm-ner data cluener`); with none of them, the small template sample
# shipped in llm_ner/sample_data/ (not CLUENER, and said so). Rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 RESTART=0 DRY_RUN=0 OUT="" MODEL="" CONFIG="" TRAIN_LIMIT="" DEV_LIMIT="" EXTRA_TRAIN_ARGS=()
need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "$1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --restart) RESTART=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --out) need "$@"; OUT="$2"; shift ;;
    --model) need "$@"; MODEL="$2"; shift ;;
    --config) need "$@"; CONFIG="$2"; shift ;;
    --train-n) need "$@"; TRAIN_LIMIT="$2"; shift ;;
    --dev-n) need "$@"; DEV_LIMIT="$2"; shift ;;
    --) shift; EXTRA_TRAIN_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for n in "$TRAIN_LIMIT" "$DEV_LIMIT"; do
  case "$n" in ""|[1-9]|[1-9][0-9]*) ;; *) echo "--train-n/--dev-n: a whole number >= 1, got '$n'" >&2; exit 2 ;; esac
done
# The project's .venv (created on first use), unless llm-ner is already installed in the active environment.
if [ -x .venv/bin/python ] || ! { command -v llm-ner && python -c "import llm_ner"; } >/dev/null 2>&1; then
  [ -x .venv/bin/python ] || bash scripts/setup.sh
  export PATH="$PWD/.venv/bin:$PATH"
fi
if [ "$QUICK" = 1 ]; then
  TRAIN_N=2000 DEV_N=300 EPOCHS=1 BASELINE_EPOCHS=5
else
  TRAIN_N="" DEV_N="" EPOCHS=2 BASELINE_EPOCHS=10
fi
TRAIN_N=${TRAIN_LIMIT:-$TRAIN_N} DEV_N=${DEV_LIMIT:-$DEV_N}
if [ -n "$MODEL" ]; then
  # The config made for this model: configs/*.yaml whose model_name_or_path has the same last path part, else
  # whose file name (qwen2.5-0.5b, qwen3-8b, ...) is part of the model's name. --config overrides.
  if [ -z "$CONFIG" ]; then
    name=$(basename "$MODEL" | tr '[:upper:]' '[:lower:]')
    for f in configs/*-lora.yaml; do
      base=$(sed -n 's/^model_name_or_path: *\([^ #]*\).*/\1/p' "$f" | xargs basename | tr '[:upper:]' '[:lower:]')
      [ "$base" = "$name" ] && CONFIG="$f" && break
    done
    if [ -z "$CONFIG" ]; then
      for f in configs/*-lora.yaml; do
        key=$(basename "$f" -lora.yaml)
        case "$name" in *"$key"*) CONFIG="$f"; break ;; esac
      done
    fi
    [ -n "$CONFIG" ] || { echo "no config in configs/ matches $MODEL; pass --config configs/FILE.yaml" >&2; exit 2; }
  fi
  [ -f "$CONFIG" ] || { echo "--config $CONFIG: no such file" >&2; exit 2; }
  case "$MODEL" in /*|.*|~*|*/*/*)  # a path, not an org/name hub id
    [ -d "$MODEL" ] || { echo "--model $MODEL: no such directory (a hub id looks like org/name)" >&2; exit 2; } ;;
  esac
  MODEL_NAME=$(basename "$MODEL")
  [ -z "$TRAIN_LIMIT$DEV_LIMIT" ] && [ "$QUICK" = 0 ] && EPOCHS=""  # the config's epochs
fi
TRAIN_CONFIG=${MODEL:+$CONFIG}
TRAIN_CONFIG=${TRAIN_CONFIG:-configs/tiny-cpu.yaml}
# One prompt end to end: the training file is converted with the prompt and answer format the training
# config names (or `-- --prompt X` / `-- --answer_format F`), and training checks the converted file's record.
settings=$(python -c 'import sys, yaml
config = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
print(config.get("prompt") or "cluener_zh")
print(config.get("answer_format") or "mentions")' "$TRAIN_CONFIG")
PROMPT=${settings%%$'\n'*} ANSWER_FORMAT=${settings#*$'\n'} PROMPT_FROM="$TRAIN_CONFIG"
for ((i = 0; i < ${#EXTRA_TRAIN_ARGS[@]}; i++)); do
  arg=${EXTRA_TRAIN_ARGS[i]} next=${EXTRA_TRAIN_ARGS[i + 1]:-}
  case "$arg" in
    --prompt) PROMPT=$next ;;
    --prompt=*) PROMPT=${arg#--prompt=} ;;
    --answer_format) ANSWER_FORMAT=$next ;;
    --answer_format=*) ANSWER_FORMAT=${arg#--answer_format=} ;;
    *) continue ;;
  esac
  PROMPT_FROM="$TRAIN_CONFIG and the arguments after --"
done
# Each kind of run has its own folder, so a real-model run never replaces the tiny run's results.
[ "$QUICK" = 1 ] && suffix=-quick || suffix=""
OUT=${OUT:-runs/quickstart${MODEL:+-$MODEL_NAME}$suffix}
if [ "$DRY_RUN" = 1 ]; then
  echo "out: $OUT"
  echo "model: ${MODEL:-tiny random Qwen3 built here}${CONFIG:+ (config $CONFIG)}"
  echo "train: ${TRAIN_N:+the first }${TRAIN_N:-all} sentences, dev: ${DEV_N:+the first }${DEV_N:-all} sentences"
  echo "prompt: $PROMPT, answer format $ANSWER_FORMAT ($PROMPT_FROM)"
  exit 0
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
SETTINGS="data=$DATA quick=$QUICK model=$MODEL config=$CONFIG train_n=$TRAIN_N dev_n=$DEV_N"
if [ ${#EXTRA_TRAIN_ARGS[@]} -gt 0 ]; then SETTINGS="$SETTINGS train_args=${EXTRA_TRAIN_ARGS[*]@Q}"; fi
if [ "$RESTART" = 1 ]; then
  rm -rf "$OUT"
elif [ -e "$OUT" ] && [ "$(cat "$OUT/.settings" 2>/dev/null)" != "$SETTINGS" ]; then
  echo "$OUT holds a run with other settings (or no quickstart run); use --restart to replace it, or --out DIR" >&2
  exit 2
fi
mkdir -p "$OUT/data"
echo "$SETTINGS" > "$OUT/.settings"
TRAIN="$DATA/train.json" DEV="$DATA/dev.json"
if [ -n "$TRAIN_N" ]; then  # the first N sentences of each split
  head -n "$TRAIN_N" "$DATA/train.json" > "$OUT/data/train.json"
  TRAIN="$OUT/data/train.json"
fi
if [ -n "$DEV_N" ]; then
  head -n "$DEV_N" "$DATA/dev.json" > "$OUT/data/dev.json"
  DEV="$OUT/data/dev.json"
fi
echo "train $TRAIN ($(wc -l < "$TRAIN") sentences), dev $DEV ($(wc -l < "$DEV") sentences): $SOURCE"

step 2 "convert train to chat instructions with prompt $PROMPT ($PROMPT_FROM)"
llm-ner convert --input "$TRAIN" --output "$OUT/train.jsonl" --prompt "$PROMPT" --format "$ANSWER_FORMAT"

if [ -n "$MODEL" ]; then
  SYSTEM="$MODEL_NAME-lora"
  if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE="GPU" device_args=()
  else  # bf16 autocast is slow or missing on CPUs
    DEVICE="CPU" device_args=(--use_cpu true --bf16 false --dtype float32)
  fi
  step 3 "model $MODEL with LoRA, $CONFIG, on the $DEVICE"
  echo "$MODEL"
  BASE_MODEL="$MODEL"
else
  SYSTEM="tiny-qwen3-sft" device_args=()
  step 3 "build a tiny random Qwen3 with a locally trained tokenizer"
  is_done tiny || { llm-ner tiny-model --arch qwen3 --out "$OUT/tiny-qwen3" --texts "$TRAIN" "$DEV" && done_step tiny; }
  BASE_MODEL="$OUT/tiny-qwen3"
fi

step 4 "fine-tune it: train_sft.py --config $TRAIN_CONFIG"
if ! is_done train; then
  resume=()
  last=$(ls -d "$OUT"/model/checkpoint-* 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$last" ] && resume=(--resume_from_checkpoint "$last") && echo "resuming from $last"
  epochs=()  # empty with --model and no --quick/--train-n/--dev-n: the config's epochs
  [ -n "$EPOCHS" ] && epochs=(--num_train_epochs "$EPOCHS")
  python train_sft.py --config "$TRAIN_CONFIG" --train_file "$OUT/train.jsonl" --eval_file "$DEV" \
    --model_name_or_path "$BASE_MODEL" --output_dir "$OUT/model" "${epochs[@]}" "${device_args[@]}" "${resume[@]}" \
    "${EXTRA_TRAIN_ARGS[@]}"
  done_step train
fi

step 5 "extract entities from dev (batched, resumable, constrained decoding)"
llm-ner extract --model "$OUT/model" --input "$DEV" --output "$OUT/$SYSTEM.dev.pred.json" --batch-size 64 --constrained

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
if [ -n "$MODEL" ]; then
  note="$note $SYSTEM: $MODEL fine-tuned with LoRA ($CONFIG${EPOCHS:+, $EPOCHS epoch(s)}) on the $DEVICE, extraction with constrained decoding."
else
  note="$note tiny-qwen3-sft: a 1.2 M-parameter Qwen3 with random initial weights, fully fine-tuned for $EPOCHS epoch(s) on CPU (configs/tiny-cpu.yaml), extraction with constrained decoding: it proves the plumbing, not quality."
fi
[ -n "$TRAIN_N$DEV_N" ] && [ "$QUICK" = 0 ] && note="$note Trained on the first ${TRAIN_N:-all} train sentences, scored on the first ${DEV_N:-all} dev sentences."
note="$note bilstm-crf: trained from scratch for $BASELINE_EPOCHS epochs, the epoch with the best dev F1 kept."
llm-ner report --gold "$DEV" --pred "$SYSTEM=$OUT/$SYSTEM.dev.pred.json" \
  --pred bilstm-crf="$OUT/bilstm-crf.dev.pred.json" "${published[@]}" --out "$OUT/report" --note "$note"

echo
awk '/^## Summary/ {p = 1; print; next} p && /^\|/ {print; t = 1; next} p && t {exit}' "$OUT/report/report.md"
echo
echo "done in $(( $(date +%s) - start ))s on $SOURCE"
echo "report: $OUT/report/report.md"
echo "chart:  $OUT/report/f1_per_class.png"
