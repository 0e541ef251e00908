#!/usr/bin/env bash
# Installs everything the tests need into .venv (from scratch on a fresh clone) and runs the suite.
#   scripts/test.sh            the default suite (what CI runs)
#   scripts/test.sh --all      also the slow tests (real 31M model, whole corpora)
#   scripts/test.sh -k lore    any other pytest arguments pass through
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PENWRIGHT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,mlx]"

# Headless Chromium for the dashboard and report tests (Debian's package; Playwright's own download fails offline).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium" >&2
fi

# The VS Code extension's unit tests (vitest, stubbed vscode module) and its type check.
if command -v npm >/dev/null 2>&1; then
  (cd extension && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm test --silent)
else
  echo "warning: npm not found; skipping the extension's unit tests" >&2
fi

# Lint and format (ruff; config in pyproject.toml): a style slip fails here, before the long suite.
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
args=()
for a in "$@"; do
  if [ "$a" = "--all" ]; then args+=(-m "not gpu and not editor"); else args+=("$a"); fi
done
exec "$VENV/bin/python" -m pytest "${args[@]}"
