#!/usr/bin/env bash
# The `gpu` tests on the device machine (carry .whl-daemon, filled here by `turnaround.sh fetch`: the daemon's
# wheels plus bitsandbytes): 4-bit/8-bit serving, tests/server/test_engine_gpu.py. Extra arguments go to pytest.
set -o pipefail
cd "$(dirname "$0")/../.." || exit 2
source benchmarks/device/env.sh
t0=$SECONDS
setup gpu || exit 3
python3 -c "import bitsandbytes; print('bitsandbytes', bitsandbytes.__version__)" || exit 3
out=${OUT:-/tmp/pw-out}
mkdir -p "$out"
python3 -m pytest -p no:cacheprovider -m gpu -q -rs --durations=10 tests/server/test_engine_gpu.py "$@" 2>&1 \
  | tee "$out/gpu_tests.log"
rc=$?
echo "gpu tests: rc $rc, $((SECONDS - t0))s"
exit $rc
