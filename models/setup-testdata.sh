#!/usr/bin/env bash
# Fetch public-domain test photos for reelay's inference tests.
#
# scikit-image wheels ship skimage/data/astronaut.png and camera.png (public
# domain). This downloads one wheel (no install, no dependencies) into
# .cache/pip and extracts the two PNGs into .cache/testdata/. Idempotent.
set -euo pipefail

VERSION=0.25.2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.cache/testdata"
PIP_DIR="$ROOT/.cache/pip"
FILES=(astronaut.png camera.png)

have_all=1
for f in "${FILES[@]}"; do [[ -s "$OUT/$f" ]] || have_all=0; done
if [[ $have_all == 1 ]]; then
  echo "test images already in $OUT"
  exit 0
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
mkdir -p "$PIP_DIR" "$OUT"
wheel() { ls "$PIP_DIR"/scikit_image-"$VERSION"-*.whl 2>/dev/null | head -n1; }
if [[ -z "$(wheel)" ]]; then
  "$PY" -m pip download --no-deps --only-binary :all: "scikit-image==$VERSION" -d "$PIP_DIR"
fi
WHEEL="$(wheel)"
[[ -n "$WHEEL" ]] || { echo "setup-testdata: no scikit-image $VERSION wheel in $PIP_DIR" >&2; exit 1; }

"$PY" - "$WHEEL" "$OUT" "${FILES[@]}" <<'PYEOF'
import os, shutil, sys, zipfile
wheel, out, *files = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for f in files:
        tmp = os.path.join(out, f + ".part")
        with z.open(f"skimage/data/{f}") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, os.path.join(out, f))
PYEOF
echo "test images -> $OUT"
