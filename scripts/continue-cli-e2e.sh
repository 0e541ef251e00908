#!/usr/bin/env bash
# Chat through the real Continue CLI (npm @continuedev/cli, headless `cn -p`) against a real Penwright server:
# installs the CLI into .cache/continue-cli (node_modules, git-ignored) and runs tests/server/test_continue_cli.py.
#   scripts/continue-cli-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PENWRIGHT_VENV:-.venv}"
CLI_DIR=.cache/continue-cli
CLI_VERSION="${CONTINUE_CLI_VERSION:-1.5.47}"
if [ ! -x "$CLI_DIR/node_modules/.bin/cn" ]; then
  mkdir -p "$CLI_DIR"
  npm install --prefix "$CLI_DIR" --no-audit --no-fund --loglevel=error "@continuedev/cli@$CLI_VERSION"
fi
export PENWRIGHT_CONTINUE_CLI="$PWD/$CLI_DIR/node_modules/.bin/cn"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest -m "slow or not slow" tests/server/test_continue_cli.py "$@"
