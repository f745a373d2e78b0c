#!/usr/bin/env bash
# Create .venv and install the project: torch first (pinned to the CPU build torch==2.13.0; an
# unpinned torch pulls gigabytes of CUDA wheels), then llm-ner with its test extras. Safe to rerun.
#   GPU users: USE_SYSTEM_TORCH=1 bash scripts/setup.sh   reuses the CUDA torch of $PYTHON, or
#              TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" bash scripts/setup.sh
#   With USE_SYSTEM_TORCH=1 the system's transformers/trl/peft/... are kept when they meet
#   pyproject.toml's floors and upgraded when older; the last step checks them (llm_ner/versions.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv ${USE_SYSTEM_TORCH:+--system-site-packages} .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086  # TORCH_SPEC holds pip arguments
  .venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "from llm_ner.versions import check_versions; check_versions()"
echo "installed: $(.venv/bin/llm-ner --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__, "CUDA" if torch.cuda.is_available() else "CPU")')"
