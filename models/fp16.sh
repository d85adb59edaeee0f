#!/usr/bin/env bash
# Make the fp16 variants of the upscalers and check them against fp32.
#
#   bash models/fp16.sh            # convert into .cache/models/ and check
#   bash models/fp16.sh --install  # also copy them into models/ (then update
#                                  # their sha256 in models/manifest.toml)
#
# Creates the project-local venv .tools/models-venv from the pinned
# models/requirements-fp16.txt (idempotent), and the test photos
# (`make setup`, .tools/testdata). Runs on the CPU, offline once installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/models-venv"
REQ="$ROOT/models/requirements-fp16.txt"
PY="${PYTHON:-$(command -v python3 || command -v python)}"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
  "$VENV/bin/python" -m pip install --quiet --no-deps -r "$REQ"
  echo "$WANT" > "$STAMP"
fi
make -C "$ROOT" --no-print-directory setup >/dev/null
exec "$VENV/bin/python" "$ROOT/models/fp16.py" "$@"
