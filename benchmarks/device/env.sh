# Sourced by the device scripts (turnaround.sh, gpu_tests.sh): the carried folder and the setup on the device.
# The device image has torch/transformers but not penwright's serving stack; nothing can be fetched there.
W=.whl-daemon
HERE=benchmarks/device

install() {  # install DIR: its wheels into /tmp/site, once per machine
  [ -f /tmp/site/.pw-$1 ] && return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $W/$1/*.whl && touch /tmp/site/.pw-$1
}

setup() {  # there: install the wheels, penwright on PYTHONPATH as the package layout expects; `setup gpu` adds gpu/
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  for set in wheels "$@"; do install "$set" || exit 3; done
  mkdir -p /tmp/pw/penwright && cp -r penwright/. /tmp/pw/penwright/ || exit 3
  for d in server trainer rag; do ln -sfn "$PWD/$d" /tmp/pw/penwright/$d; done
  export PYTHONPATH=/tmp/site:/tmp/pw:$PWD/$W/shim
  mkdir -p /tmp/corpus && tar -C /tmp/corpus -xJf $W/corpus.tar.xz || exit 3
  python3 -c "import torch, transformers, peft, fastapi; print('versions: torch', torch.__version__, 'transformers',
    transformers.__version__, 'peft', peft.__version__, 'fastapi', fastapi.__version__, 'cuda', torch.cuda.is_available())"
}
