#!/usr/bin/env bash
# An annotation loop with a simulated annotator, and its learning curve: uncertainty vs random selection.
#
#   scripts/annotation_loop.sh --rounds 3 --per-round 200 --out runs/loop
#
# Round 0 (the seed set, shared by both arms): N sentences drawn at random from the pool (--train minus
# nothing yet), annotated, and a BiLSTM-CRF trained on them. Then, for R rounds and for each arm:
#
#   1. predict the pool with the last model (`llm-ner baseline predict`: spans and their confidences);
#   2. pick N sentences not labelled yet (`llm-ner select --by uncertainty`, or `--by random --seed`);
#   3. export them as Label Studio tasks with the predictions as pre-annotations (`llm-ner export --to
#      labelstudio`). A human would correct them in Label Studio and export the tasks; here the simulated
#      annotator is `--gold`: the gold spans become the tasks' annotation;
#   4. read the annotated tasks back as CLUENER (`llm-ner export --to cluener`), as a human's export would be;
#   5. retrain the BiLSTM-CRF on every sentence labelled so far (`llm-ner baseline train`), predict dev and add
#      the point (arm, round, labelled sentences, dev span micro-F1 with its bootstrap interval) to
#      OUT/curve.jsonl (`llm-ner curve`).
#
# Finally `llm-ner report` compares the two arms' last models and draws the learning curve
# (OUT/report/report.md, report.html, learning_curve.png). Every step is one command you can run by hand;
# each is printed before it runs. Rerunning with the same options skips finished steps (their outputs exist).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/annotation_loop.sh [options]

  --train FILE       labelled pool the simulated annotator reads its gold from (default: CLUENER train.json,
                     found by `llm-ner data cluener --no-download`)
  --dev FILE         dev file (default: CLUENER dev.json)
  --out DIR          output folder (default: runs/annotation_loop)
  --rounds R         selection rounds after the seed round (default: 3)
  --per-round N      sentences labelled per round and arm (default: 200)
  --seed-size N      sentences of the seed round (default: --per-round)
  --seed S           seed of the seed set, the random arm and training (default: 0)
  --epochs E         BiLSTM-CRF epochs per training (default: 20)
  --pool-limit P     only the first P sentences of --train form the pool (default: all)
  --dev-limit M      only the first M sentences of --dev are scored (default: all)
  --arms "A B"       selection arms, from uncertainty and random (default: "uncertainty random")
  --quiet            no progress bars

The llm-ner command is $LLM_NER (default: llm-ner), e.g. LLM_NER="python -m llm_ner".
EOF
}

TRAIN="" DEV="" OUT="runs/annotation_loop" ROUNDS=3 PER_ROUND=200 SEED_SIZE="" SEED=0 EPOCHS=20
POOL_LIMIT=0 DEV_LIMIT=0 ARMS="uncertainty random" QUIET=()
while [ $# -gt 0 ]; do
    case "$1" in
        --train) TRAIN=$2; shift 2 ;;
        --dev) DEV=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --per-round) PER_ROUND=$2; shift 2 ;;
        --seed-size) SEED_SIZE=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --epochs) EPOCHS=$2; shift 2 ;;
        --pool-limit) POOL_LIMIT=$2; shift 2 ;;
        --dev-limit) DEV_LIMIT=$2; shift 2 ;;
        --arms) ARMS=$2; shift 2 ;;
        --quiet) QUIET=(--quiet); shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
SEED_SIZE=${SEED_SIZE:-$PER_ROUND}
for number in "$ROUNDS" "$PER_ROUND" "$SEED_SIZE" "$SEED" "$EPOCHS" "$POOL_LIMIT" "$DEV_LIMIT"; do
    [[ "$number" =~ ^[0-9]+$ ]] || { echo "error: $number is not a whole number" >&2; exit 2; }
done
for arm in $ARMS; do
    [[ "$arm" == uncertainty || "$arm" == random ]] || { echo "error: unknown arm $arm" >&2; exit 2; }
done
read -r -a LLM_NER <<<"${LLM_NER:-llm-ner}"

step() { # print a command, then run it
    echo "+ llm-ner $*" >&2
    "${LLM_NER[@]}" "$@"
}

if [ -z "$TRAIN" ] || [ -z "$DEV" ]; then
    DATA=$("${LLM_NER[@]}" data cluener --no-download)
    TRAIN=${TRAIN:-$DATA/train.json}
    DEV=${DEV:-$DATA/dev.json}
fi
mkdir -p "$OUT"
started=$SECONDS

# The pool and the dev set: the first lines of the files keep their ids (CLUENER records without an id
# are numbered by line, so the pool's ids are the train file's).
POOL=$OUT/pool.json
DEV_SET=$OUT/dev.json
if [ "$POOL_LIMIT" -gt 0 ]; then head -n "$POOL_LIMIT" "$TRAIN" >"$POOL.tmp"; else cp "$TRAIN" "$POOL.tmp"; fi
mv "$POOL.tmp" "$POOL"
if [ "$DEV_LIMIT" -gt 0 ]; then head -n "$DEV_LIMIT" "$DEV" >"$DEV_SET.tmp"; else cp "$DEV" "$DEV_SET.tmp"; fi
mv "$DEV_SET.tmp" "$DEV_SET"
CURVE=$OUT/curve.jsonl

annotate() { # DIR: the selected sentences as Label Studio tasks, annotated by the gold, read back as CLUENER
    local dir=$1
    [ -s "$dir/tasks.json" ] || step export "$dir/selected.json" --to labelstudio --gold "$POOL" --output "$dir/tasks.json"
    [ -s "$dir/annotated.json" ] ||
        step export "$dir/tasks.json" --input-format labelstudio --to cluener --output "$dir/annotated.json"
}

train_and_score() { # DIR: train on DIR/labelled.json, predict dev
    local dir=$1
    [ -s "$dir/model/history.json" ] ||
        step baseline train --arch bilstm-crf --train "$dir/labelled.json" --out "$dir/model" --epochs "$EPOCHS" \
            --seed "$SEED" "${QUIET[@]}"
    [ -s "$dir/dev.pred.json" ] ||
        step baseline predict --model "$dir/model" --input "$DEV_SET" --output "$dir/dev.pred.json" "${QUIET[@]}"
}

# Round 0: the seed set, the same for every arm.
SEED_DIR=$OUT/round0
mkdir -p "$SEED_DIR"
[ -s "$SEED_DIR/selected.json" ] ||
    step select --pred "$POOL" --by random --seed "$SEED" -n "$SEED_SIZE" --output "$SEED_DIR/selected.json"
annotate "$SEED_DIR"
cp "$SEED_DIR/annotated.json" "$SEED_DIR/labelled.json"
train_and_score "$SEED_DIR"
for arm in $ARMS; do
    step curve --gold "$DEV_SET" --pred "$SEED_DIR/dev.pred.json" --labelled "$SEED_DIR/labelled.json" \
        --arm "$arm" --round 0 --seed "$SEED" --output "$CURVE"
done

for arm in $ARMS; do
    previous=$SEED_DIR
    for round in $(seq 1 "$ROUNDS"); do
        dir=$OUT/$arm/round$round
        mkdir -p "$dir"
        echo "== $arm, round $round of $ROUNDS ($((SECONDS - started)) s)" >&2
        [ -s "$dir/pool.pred.json" ] ||
            step baseline predict --model "$previous/model" --input "$POOL" --output "$dir/pool.pred.json" "${QUIET[@]}"
        if [ ! -s "$dir/selected.json" ]; then
            if [ "$arm" = random ]; then how=(--by random --seed "$((SEED * 1000 + round))"); else how=(--by uncertainty); fi
            step select --pred "$dir/pool.pred.json" "${how[@]}" -n "$PER_ROUND" --exclude "$previous/labelled.json" \
                --output "$dir/selected.json"
        fi
        annotate "$dir"
        cat "$previous/labelled.json" "$dir/annotated.json" >"$dir/labelled.json.tmp"
        mv "$dir/labelled.json.tmp" "$dir/labelled.json"
        train_and_score "$dir"
        step curve --gold "$DEV_SET" --pred "$dir/dev.pred.json" --labelled "$dir/labelled.json" --arm "$arm" \
            --round "$round" --seed "$SEED" --output "$CURVE"
        previous=$dir
    done
done

preds=()
for arm in $ARMS; do preds+=(--pred "$arm=$OUT/$arm/round$ROUNDS/dev.pred.json"); done
[ "$ROUNDS" -gt 0 ] || preds=(--pred "seed=$SEED_DIR/dev.pred.json")
step report --gold "$DEV_SET" "${preds[@]}" --learning-curve "$CURVE" --out "$OUT/report" \
    --note "Annotation loop: seed set of $SEED_SIZE random sentences, then $ROUNDS rounds of $PER_ROUND per arm; \
BiLSTM-CRF, $EPOCHS epochs, seed $SEED; pool $POOL, dev $DEV_SET. Systems: each arm's last model."
echo "done in $((SECONDS - started)) s: $OUT/report/report.md, $CURVE" >&2
