#!/usr/bin/env bash
# Test-only: fetches the real YOLOv8n export inside the PyPI `nudenet` wheel
# (nudenet/320n.onnx, an Ultralytics export: input `images` [b,3,h,w], output
# [b,22,N]) and makes a small venv with numpy and onnxruntime for the
# independent reference decode (tests/yolo/reference.py).
#
# Everything lands in .cache/yolo/ (git-ignored). The model is AGPL-3.0:
# it is fetched when the tests run and never committed or shipped.
#
# Prints two lines: the model's path and the reference python's path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache"
DIR="$CACHE/yolo"
PYTHON="${PYTHON:-python3}"
NUDENET=3.4.2
ORT=1.31.1
NUMPY=2.2.6
SHA256=c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f
MODEL="$DIR/320n.onnx"
VENV="$DIR/venv"
mkdir -p "$DIR" "$CACHE/pip"

if ! echo "$SHA256  $MODEL" | sha256sum --check --status 2>/dev/null; then
  "$PYTHON" -m pip download --quiet --no-deps --only-binary :all: --dest "$CACHE/pip" "nudenet==$NUDENET" >&2
  "$PYTHON" - "$CACHE/pip" "$NUDENET" "$MODEL.partial" <<'PY'
import glob, sys, zipfile
pip, version, out = sys.argv[1:]
wheel = zipfile.ZipFile(glob.glob(f"{pip}/nudenet-{version}-*.whl")[0])
open(out, "wb").write(wheel.read("nudenet/320n.onnx"))
PY
  echo "$SHA256  $MODEL.partial" | sha256sum --check --status || {
    echo "nudenet $NUDENET's 320n.onnx does not have the expected sha256 $SHA256" >&2
    exit 1
  }
  mv "$MODEL.partial" "$MODEL"
fi

if [ ! -f "$VENV/.done" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --cache-dir "$CACHE/pip-cache" "numpy==$NUMPY" "onnxruntime==$ORT" >&2
  touch "$VENV/.done"
fi

echo "$MODEL"
echo "$VENV/bin/python"
