#!/usr/bin/env bash
# The main job: `llm-ner quickstart` (`llm-ner quickstart --help` lists its options), run in the project's
# .venv (created on first use) unless llm-ner is already installed in the active environment.
#   bash scripts/quickstart.sh            # all of CLUENER train/dev on a tiny random Qwen3, about 9 minutes on 2 cores
#   bash scripts/quickstart.sh --quick    # 2000 train / 300 dev sentences, 1 epoch, about 2 minutes
#   bash scripts/quickstart.sh --model Qwen/Qwen2.5-0.5B-Instruct   # a real model with LoRA
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ] || ! { command -v llm-ner && python -c "import llm_ner"; } >/dev/null 2>&1; then
  [ -x .venv/bin/python ] || bash scripts/setup.sh
  export PATH="$PWD/.venv/bin:$PATH"
fi
exec llm-ner quickstart "$@"
