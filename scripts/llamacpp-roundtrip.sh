#!/usr/bin/env bash
# GGUF export against a real llama.cpp, built here from source (CPU, a while on 2 cores the first time):
#   - llama-cpp-python (llama.cpp's Python binding) into the venv: tests/trainer/test_gguf_export.py loads
#     builtin:tiny and the 31M model with an adapter trained in the test and compares greedy tokens with PyTorch;
#   - llama.cpp's own llama-server (same source, vendored in llama-cpp-python's sdist) into .cache/llama.cpp:
#     tests/server/test_proxy_llamacpp.py runs proxy mode against it, publishing promoted adapters.
#   scripts/llamacpp-roundtrip.sh            (extra pytest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PENWRIGHT_VENV:-.venv}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
FLAGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"
JOBS="${JOBS:-$(nproc)}"

if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python $VERSION from source..."
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" nice -n 19 "$VENV/bin/python" -m pip install -q \
    -c constraints.txt --no-binary llama-cpp-python "llama-cpp-python[server]==$VERSION"
fi

SERVER="${PENWRIGHT_LLAMA_SERVER:-$(command -v llama-server || true)}"
if [ -z "$SERVER" ]; then
  SRC=.cache/llama.cpp
  SERVER="$PWD/$SRC/build/bin/llama-server"
  if [ ! -x "$SERVER" ]; then
    echo "building llama-server from llama-cpp-python $VERSION's vendored llama.cpp..."
    mkdir -p "$SRC"
    "$VENV/bin/python" -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$SRC"
    tar xzf "$SRC/llama_cpp_python-$VERSION.tar.gz" -C "$SRC"
    nice -n 19 cmake -S "$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release \
      $FLAGS -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_OPENSSL=OFF >/dev/null
    nice -n 19 cmake --build "$SRC/build" --target llama-server -j "$JOBS"
  fi
fi
export PENWRIGHT_LLAMA_SERVER="$SERVER"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest -m "slow or not slow" tests/trainer/test_gguf_export.py \
  tests/server/test_proxy_llamacpp.py "$@"
