#!/usr/bin/env bash
# Fetch ONNX Runtime 1.31.1 (CPU) for reelay's `ort` crate (load-dynamic).
#
# The shared library comes out of the PyPI `onnxruntime==1.31.1` wheel; nothing
# is installed into any Python environment. Idempotent: a second run with the
# library in place does nothing.
#
#   bash models/setup-ort.sh        # from anywhere inside the repository
#
# Result: .tools/onnxruntime/lib/libonnxruntime.so.1.31.1 and a
# libonnxruntime.so symlink next to it. reelay finds it there by walking up
# from the working directory (or set ORT_DYLIB_PATH).
set -euo pipefail

VERSION=1.31.1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIB_DIR="$ROOT/.tools/onnxruntime/lib"
PIP_DIR="$ROOT/.cache/pip"
SO="libonnxruntime.so.$VERSION"

if [[ -f "$LIB_DIR/$SO" && -L "$LIB_DIR/libonnxruntime.so" ]]; then
  echo "onnxruntime $VERSION already in $LIB_DIR"
  exit 0
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
mkdir -p "$PIP_DIR" "$LIB_DIR"

wheel() { ls "$PIP_DIR"/onnxruntime-"$VERSION"-*.whl 2>/dev/null | head -n1; }
if [[ -z "$(wheel)" ]]; then
  "$PY" -m pip download --no-deps --only-binary :all: "onnxruntime==$VERSION" -d "$PIP_DIR"
fi
WHEEL="$(wheel)"
[[ -n "$WHEEL" ]] || { echo "setup-ort: no onnxruntime $VERSION wheel in $PIP_DIR" >&2; exit 1; }

# A wheel is a zip file; Python's zipfile avoids depending on `unzip`.
"$PY" - "$WHEEL" "$LIB_DIR" "$SO" <<'PYEOF'
import os, shutil, sys, zipfile
wheel, lib_dir, so = sys.argv[1:]
member = f"onnxruntime/capi/{so}"
with zipfile.ZipFile(wheel) as z:
    tmp = os.path.join(lib_dir, so + ".part")
    with z.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, os.path.join(lib_dir, so))
PYEOF
ln -sfn "$SO" "$LIB_DIR/libonnxruntime.so"
echo "onnxruntime $VERSION -> $LIB_DIR/libonnxruntime.so"
