#!/usr/bin/env bash
# Create .venv and install the project: CPU torch 2.13.0 first (an unpinned torch pulls the CUDA
# wheels; users with a GPU install their CUDA torch before running this), then llm-ner with its
# test extras. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[test]"
echo "installed: $(.venv/bin/llm-ner --version)"
