#!/usr/bin/env bash
# Save-to-live turnaround (benchmarks/turnaround.py) on the GPU machine, which has no internet and no penwright.
#
#   benchmarks/device/turnaround.sh fetch        # here, once: wheels, tokenizer, corpus, wordfreq table into .whl-daemon/
#   benchmarks/device/turnaround.sh run [ARGS]   # there (carry .whl-daemon): random-init Qwen2.5-0.5B shape, bf16 on
#                                                # CUDA, 100,000 words, 60 steps; ARGS go to turnaround.py
#   benchmarks/device/turnaround.sh local [ARGS] # here: the same flow with only the device's packages importable
#                                                # (sim/sitecustomize.py), small shape on the CPU, to rehearse `run`
#
# .whl-daemon/ (git-ignored, ~7 MB; with the bitsandbytes wheel for gpu_tests.sh ~50 MB):
#   wheels/  wheels.txt (daemon: fastapi, uvicorn, watchdog, peft, pydantic...)   gpu/  gpu_wheels.txt
#   tokenizer/ the 31M base's tokenizer   corpus.tar.xz  ../shared/corpora/austen   shim/wordfreq  a Zipf table
# Lore is off: chromadb (23 MB) and its embedding model (84 MB) do not fit in a 64 MiB call, and a project
# without lore never imports chromadb (the `local` mode refuses it, so an import would fail there too).
set -o pipefail
cd "$(dirname "$0")/../.." || exit 2
source benchmarks/device/env.sh  # W, HERE, setup
SHARED=${PENWRIGHT_SHARED:-../shared}
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"

download() {  # download LIST DEST: exact versions for CPython 3.12 on x86-64 Linux, no dependencies
  rm -rf "$2" && mkdir -p "$2" || return 1
  grep -v '^#' "$1" | xargs python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $PLATFORMS -d "$2" || return 1
}

fetch() {
  local py=${PYTHON:-.venv/bin/python}
  download $HERE/wheels.txt $W/wheels && download $HERE/gpu_wheels.txt $W/gpu || exit 3
  mkdir -p $W/tokenizer $W/shim/wordfreq
  cp "$SHARED"/models/gutenberg-qwen2-31m/{tokenizer.json,tokenizer_config.json,special_tokens_map.json} $W/tokenizer/ || exit 3
  tar -C "$SHARED/corpora" -cJf $W/corpus.tar.xz austen || exit 3
  cp $HERE/wordfreq_shim.py $W/shim/wordfreq/__init__.py
  "$py" -c "import json, wordfreq as w; json.dump({x: w.zipf_frequency(x, 'en') for x in w.top_n_list('en', 60000)},
    open('$W/shim/wordfreq/en.json', 'w'))" || exit 3
  du -sh $W/* $W
}

run() {
  local t0=$SECONDS out=${OUT:-/tmp/pw-out}
  mkdir -p "$out"
  setup || exit 3
  echo "setup took $((SECONDS - t0))s"
  python3 benchmarks/turnaround.py --shape 0.5b --tokenizer $W/tokenizer --corpus $R/corpus/austen --words 100000 \
    --steps 60 --requests 24 --gate-margin 1.0 --deadline 400 --json-out "$out/turnaround.json" "$@" 2>&1 \
    | grep -v "it/s\]" | tee "$out/turnaround.log"
  local rc=$?
  echo "total $((SECONDS - t0))s (rc $rc)"
  return $rc
}

local_run() {  # here: the device's package set only, penwright from PYTHONPATH as there, a small shape on the CPU
  local py=${PYTHON:-.venv/bin/python} tmp
  tmp=$(mktemp -d /tmp/pw-devsim-XXXX) || exit 3
  cat $HERE/device_packages.txt $HERE/wheels.txt > "$tmp/allowed.txt"
  "$py" $HERE/sim/sitecustomize.py "$tmp/allowed.txt" "$tmp/site" || exit 3
  mkdir -p "$tmp/pw/penwright" && cp -r penwright/. "$tmp/pw/penwright/"
  for d in server trainer rag; do ln -sfn "$PWD/$d" "$tmp/pw/penwright/$d"; done
  PW_DEVICE_SITE="$tmp/site" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    PYTHONPATH="$PWD/$HERE/sim:$tmp/pw:$PWD/$W/shim" "$py" benchmarks/turnaround.py --shape small \
    --tokenizer $W/tokenizer --corpus "$SHARED/corpora/austen" --words 6000 --steps 4 --requests 4 \
    --prompt-tokens 200 --gate-margin 1.0 --deadline 600 --json-out "$tmp/turnaround.json" "$@"
  local rc=$?
  echo "imports not found (absent on the device too): $(sort -u "$tmp/site/missing.txt" 2>/dev/null | tr '\n' ' ')"
  grep -qx chromadb "$tmp/site/missing.txt" 2>/dev/null && { echo "the daemon tried to import chromadb"; rc=1; }
  echo "figures: $tmp/turnaround.json (rc $rc)"
  return $rc
}

case "$1" in
  fetch) fetch ;;
  run) shift; run "$@" ;;
  local) shift; local_run "$@" ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
