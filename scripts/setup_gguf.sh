#!/usr/bin/env bash
# The [gguf] extra into .venv: GGUF export (`llm-ner export-model`) and llama.cpp as an extraction backend.
# llama-cpp-python has no Linux wheel on PyPI: its sdist is built once with cmake and a C++ compiler (7 min 6 s
# on 2 CPU cores) into ~/.cache/llm-ner/wheels, and reinstalled from there afterwards. The wheel is built for this
# machine's CPU (llama.cpp's -march=native default): do not copy the cache to another kind of CPU. Then llama.cpp's
# converter (convert_hf_to_gguf.py) is taken from the same sdist into ~/.cache/llm-ner (`--fetch-converter`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
VERSION=$(.venv/bin/python -c "from llm_ner.gguf_export.converter import LLAMA_CPP_PYTHON_VERSION as v; print(v)")
WHEELS=${XDG_CACHE_HOME:-$HOME/.cache}/llm-ner/wheels
if ! compgen -G "$WHEELS/llama_cpp_python-$VERSION-*.whl" >/dev/null; then
  echo "building llama-cpp-python $VERSION from its sdist into $WHEELS (cmake + C++, several minutes)"
  start=$SECONDS
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} .venv/bin/python -m pip wheel -q --no-deps \
    --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$WHEELS"
  echo "built in $((SECONDS - start)) s"
fi
.venv/bin/python -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$VERSION" -e ".[test,gguf]"
.venv/bin/python -c "from llm_ner.gguf_export.converter import fetch_converter; print('llama.cpp converter:', fetch_converter())"
