# Sourced by the device scripts (turnaround.sh, gpu_tests.sh): the carried folder and the setup on the device.
# The device image has torch/transformers but not penwright's serving stack; nothing can be fetched there.
W=.whl-daemon
HERE=benchmarks/device
R=${PW_DEVICE_ROOT:-/tmp}  # where the setup writes (site/, pw/, corpus/)

install() {  # install DIR: its wheels into $R/site, once per machine
  [ -f $R/site/.pw-$1 ] && return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $R/site \
    $W/$1/*.whl && touch $R/site/.pw-$1
}

setup() {  # there: install the wheels, penwright on PYTHONPATH as the package layout expects; `setup gpu` adds gpu/
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  for set in wheels "$@"; do install "$set" || exit 3; done
  mkdir -p $R/pw/penwright && cp -r penwright/. $R/pw/penwright/ || exit 3
  for d in server trainer rag; do ln -sfn "$PWD/$d" $R/pw/penwright/$d; done
  export PYTHONPATH=$R/site:$R/pw:$PWD/$W/shim
  # `python3 -m ...` and pytest from the repo root would otherwise put the repo first on sys.path, where
  # penwright/ has no server/trainer/rag (setup.py maps those folders in; on the device they come through $R/pw)
  export PYTHONSAFEPATH=1
  mkdir -p $R/corpus && tar -C $R/corpus -xJf $W/corpus.tar.xz || exit 3
  python3 -c "import penwright.server, penwright.trainer, penwright.rag" || exit 3
  python3 -c "import torch, transformers, peft, fastapi; print('versions: torch', torch.__version__, 'transformers',
    transformers.__version__, 'peft', peft.__version__, 'fastapi', fastapi.__version__, 'cuda', torch.cuda.is_available())"
}
