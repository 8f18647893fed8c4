#!/usr/bin/env bash
# Create the virtual environment with the locked dependency set (uv, uv.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --quiet --compile-bytecode
# byte-code for our own sources too: every CLI test starts a new interpreter
uv run --frozen python -m compileall -q src >/dev/null
