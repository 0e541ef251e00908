#!/usr/bin/env bash
# Issue 12 on the GPU machine (carry .whl-engine): the CUDA-graph decode path's GPU tests, then serve_latency with
# the static-KV + CUDA-graph engine beside plain generate() (dynamic and static cache); ENGINES=dynamic,static adds
# the engine's dynamic path (the engine before issue 12) as a column.
#
#   benchmarks/device/serve_compiled.sh fetch    # here, once: wheels.txt + transformers 5.24.0 into .whl-engine/
#   benchmarks/device/serve_compiled.sh run      # there: GPU tests, then --shape 0.5b --shape 7b on cuda
#   benchmarks/device/serve_compiled.sh compiled # there: 0.5B, static KV + graphs with/without torch.compile
#   benchmarks/device/serve_compiled.sh rehearse # here: the same steps on the CPU, tiny shape, GPU tests skipped
#
# transformers 5.24.0 travels so the device runs the version the CPU tests ran (the image has 5.17).
# Every figure lands in $OUT (serve_latency.log / .json, gpu_tests.log); the summary tables print last.
set -o pipefail
cd "$(dirname "$0")/../.." || exit 2
W=.whl-engine
R=${PW_DEVICE_ROOT:-/tmp/pw-engine}
out=${OUT:-/tmp/pw-out}
BENCH_SECONDS=${BENCH_SECONDS:-300}  # phases that would start later are skipped; the summary still prints

fetch() {
  rm -rf $W && mkdir -p $W || exit 3
  (grep -v '^#' benchmarks/device/wheels.txt; echo transformers==5.24.0) | xargs "${PYTHON:-.venv/bin/python}" -m pip \
    download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $W || exit 3
  du -sh $W
}

setup() {  # the wheels into $R/site, penwright's package layout in $R/pw (setup.py maps server/trainer/rag in)
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  [ -n "$REHEARSE" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target $R/site $W/*.whl || exit 3  # (a rehearsal here uses the venv's own packages)
  mkdir -p $R/pw/penwright && cp -r penwright/. $R/pw/penwright/ || exit 3
  for d in server trainer rag; do ln -sfn "$PWD/$d" $R/pw/penwright/$d; done
  export PYTHONPATH=$R/site:$R/pw PYTHONSAFEPATH=1
  python3 -c "import torch, transformers, peft, penwright.server.engine; print('versions: torch', torch.__version__,
    'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available(),
    torch.cuda.get_device_name() if torch.cuda.is_available() else '')" || exit 3
}

run() {  # run [cpu]: GPU tests (skipped on cpu), then the benchmark
  local t0=$SECONDS device=${1:-cuda} shapes="--shape 0.5b --shape 7b"
  mkdir -p "$out"
  setup
  [ "$device" = cpu ] && shapes="--shape tiny"
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv 2>/dev/null
  echo "setup $((SECONDS - t0))s"
  timeout 150 python3 -m pytest -p no:cacheprovider -m gpu -q -rs -x --timeout=140 \
    tests/server/test_engine_graphs_gpu.py 2>&1 | tail -25 | tee "$out/gpu_tests.log"
  echo "gpu tests done at $((SECONDS - t0))s"
  timeout $((BENCH_SECONDS + 150)) python3 benchmarks/serve_latency.py $shapes --device $device --only-merged \
    --max-batch 8 --engines ${ENGINES:-static} --requests 6 --requests-per-client 2 --generate-baselines \
    --generate-requests 3 --fixed-tokens 32 --deadline $BENCH_SECONDS --out "$out/serve_latency.json" 2>&1 \
    | grep -v -e "it/s\]" -e "warnings.warn" | tee "$out/serve_latency.log" | grep -v "^| engine\|^| baseline"
  local rc=$?
  echo "total $((SECONDS - t0))s (rc $rc)"
  return $rc
}

compiled() {  # the 0.5B shape only: static KV + CUDA graphs with and without torch.compile of the step, same run
  local t0=$SECONDS
  mkdir -p "$out"
  setup
  timeout 60 python3 -m pytest -p no:cacheprovider -m gpu -q -rs -x --timeout=50 -k cannot_hold \
    tests/server/test_engine_graphs_gpu.py 2>&1 | tail -4 | tee "$out/gpu_tests.log"
  timeout ${BENCH_SECONDS:-100} python3 benchmarks/serve_latency.py --shape 0.5b --device cuda --only-merged \
    --max-batch 8 --engines static,static+compile --requests 6 --requests-per-client 2 --no-training --no-hot-swap \
    --fixed-tokens 32 --out "$out/serve_compile.json" 2>&1 | grep -v -e "it/s\]" -e "warnings.warn" \
    | tee "$out/serve_compile.log" | grep -v "^| engine\|^| baseline"
  echo "total $((SECONDS - t0))s"
}

case "$1" in
  fetch) fetch ;;
  run) run cuda ;;
  compiled) compiled ;;
  rehearse) REHEARSE=1 PATH="$PWD/.venv/bin:$PATH" BENCH_SECONDS=${BENCH_SECONDS:-120} run cpu ;;
  *) sed -n 2,10p "$0"; exit 2 ;;
esac
