#!/usr/bin/env bash
# Installs Penwright into .venv and starts the daemon on the bundled example project,
# with embedded defaults: local chromadb, SQLite, CPU, and builtin:tiny (a demo model, no model hub needed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PENWRIGHT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[mlx]"
exec "$VENV/bin/penwright" serve --project examples/novel "$@"
