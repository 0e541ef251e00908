#!/usr/bin/env bash
# Issue 16 on the device machine, in one call (carry .whl): the CUDA training tests (`pytest -m gpu`), then
# benchmarks/train_throughput.py for 0.5b, 7b and 7b nf4: baseline, TRL's packed padding-free peer (and with
# Liger), ours with each lever alone and together, each loop in a fresh process. Logs go to $OUT.
#
#   benchmarks/device/train_bench.sh fetch    # here, once: the wheels the device lacks, into .whl/ (git-ignored)
#   benchmarks/device/train_bench.sh run      # there: setup, tests, benchmark (TRAIN_TOTAL seconds in all)
#   benchmarks/device/train_bench.sh local    # here: the same sequence on the CPU with tiny settings (rehearsal)
#
# .whl/ (~48 MB): trl, datasets (+dill, multiprocess), liger-kernel, bitsandbytes, peft, pydantic and its parts.
set -o pipefail
cd "$(dirname "$0")/../.." || exit 2
WHEELS="trl==1.16.0 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5 bitsandbytes==0.50.2
  peft==0.21.2 pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5
  typing_extensions==4.16.0"
R=${PW_DEVICE_ROOT:-/tmp/pwtrain}
OUT_DIR=${OUT:-/tmp/pw-out}

fetch() {
  local py=${PYTHON:-.venv/bin/python}
  mkdir -p .whl && "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $WHEELS && du -sh .whl
}

setup() {  # there: wheels into $R/site, penwright's namespace layout on PYTHONPATH (as setup.py maps it)
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$R/site" \
    .whl/*.whl || exit 3
  mkdir -p "$R/pw/penwright" && cp -r penwright/. "$R/pw/penwright/" || exit 3
  for d in server trainer rag; do ln -sfn "$PWD/$d" "$R/pw/penwright/$d"; done
  export PYTHONPATH=$R/site:$R/pw PYTHONSAFEPATH=1
  python3 -c "import torch, transformers, peft, trl, datasets, accelerate, liger_kernel, bitsandbytes, triton
print('versions: torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__,
      'trl', trl.__version__, 'accelerate', accelerate.__version__, 'bitsandbytes', bitsandbytes.__version__,
      'triton', triton.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" || exit 3
}

run() {  # the CUDA lever tests first (TRAIN_TESTS_LIMIT s), then the benchmark (TRAIN_SHAPES) in what is left of TRAIN_TOTAL s
  local t0=$SECONDS
  mkdir -p "$OUT_DIR"
  setup 2>&1 | tee "$OUT_DIR/setup.log" || exit 3
  export PYTHONPATH=$R/site:$R/pw PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv | tee -a "$OUT_DIR/setup.log"
  timeout "${TRAIN_TESTS_LIMIT:-240}" python3 -m pytest -p no:cacheprovider -m gpu -q -rs --durations=6 \
    tests/trainer/test_train_levers_gpu.py -k "${TRAIN_TESTS_K:-compile and fused}" 2>&1 | tee "$OUT_DIR/gpu_tests.log"
  echo "gpu tests: rc $? at $((SECONDS - t0))s"
  python3 benchmarks/train_throughput.py ${TRAIN_SHAPES:---shape 0.5b --shape 7b} --qlora --samples 400 --warmup 1 --steps 4 \
    --peer varlen --peer varlen+liger \
    --deadline "$((${TRAIN_TOTAL:-500} - (SECONDS - t0)))" --reserve 40 "$@" 2>&1 | tee "$OUT_DIR/train_throughput.log"
  echo "total $((SECONDS - t0))s"
}

local_run() {  # here: the same steps on the CPU, the real 31M base, a few steps (a rehearsal, not a measurement)
  local py=${PYTHON:-.venv/bin/python}
  "$py" -m pytest -p no:cacheprovider -q tests/trainer/test_train_levers.py -k "plan or nothing or cpu_takes" || exit 1
  "$py" benchmarks/train_throughput.py --shape 31m --samples 24 --warmup 1 --steps 2 --batch 2 \
    --peer sdpa --peer varlen --ours 0 --ours 1:fused --deadline 900 "$@"
}

case "$1" in
  fetch) fetch ;;
  run) shift; run "$@" ;;
  local) shift; local_run "$@" ;;
  *) sed -n 2,10p "$0"; exit 2 ;;
esac
