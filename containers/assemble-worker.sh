#!/usr/bin/env bash
# Lays out exactly what the GPU worker image ships, under DEST:
#
#   DEST/bin/reelay     built with --features cuda (--locked)
#   DEST/bin/ffmpeg     static FFmpeg 9 from the imageio-ffmpeg wheel
#   DEST/lib/           ONNX Runtime GPU 1.31.1 under its own versioned name
#                       (libonnxruntime.so.1.31.1, so audits read the version),
#                       its CUDA provider, and the CUDA 13 runtime, cuBLAS(Lt),
#                       cuRAND, NVRTC and cuDNN 9 libraries it needs
#   DEST/fonts/         Roboto-Bold.ttf (captions) and its LICENSE
#   DEST/models/        manifest.toml, the ONNX files and their LICENSES
#   DEST/CONTENTS.sha256  every file above, for the record
#
# The versions are pinned in containers/worker-libs.txt. The Dockerfile runs
# this script (`--profile release`, the default) and copies DEST to
# /opt/reelay; `make worker-image` runs it with `--profile dev` into
# target/worker-image for the CUDA chain tests (tests/gpu_worker.rs), so what
# is tested is what ships (only the compiler's optimisation profile differs).
#
#   bash containers/assemble-worker.sh [--profile release|dev] [--skip-build] DEST
#
# --skip-build lays out everything but reelay (for a check of the libraries).
# Wheels are cached in $REELAY_PIP_CACHE (default .cache/pip); a wheel already
# there is not fetched again. Needs python3 with pip, and cargo unless --skip-build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS=$ROOT/containers/worker-libs.txt
PROFILE=release
BUILD=1
DEST=
while [ $# -gt 0 ]; do
  case $1 in
    --profile) PROFILE=$2; shift 2 ;;
    --skip-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "assemble-worker: unknown option $1" >&2; exit 2 ;;
    *) DEST=$1; shift ;;
  esac
done
[ -n "$DEST" ] || { echo "usage: $0 [--profile release|dev] [--skip-build] DEST" >&2; exit 2; }
case $PROFILE in release | dev) ;; *) echo "assemble-worker: --profile must be release or dev" >&2; exit 2 ;; esac

PY=${PYTHON:-$(command -v python3 || command -v python)}
CACHE=${REELAY_PIP_CACHE:-$ROOT/.cache/pip}
mkdir -p "$CACHE"

# pin NAME: the version pinned for NAME in worker-libs.txt.
pin() {
  local v
  v=$(sed -n "s/^$1==\([^[:space:]#]*\).*/\1/p" "$PINS")
  [ -n "$v" ] || { echo "assemble-worker: $1 is not pinned in $PINS" >&2; exit 1; }
  echo "$v"
}

# fetch NAME KIND: the cached wheel or sdist of NAME==pin, fetched when absent.
# Wheels are chosen for CPython 3.12 on manylinux x86_64 whatever Python runs
# this, so the host and the image unpack the same files.
fetch() {
  local name=$1 kind=$2 version file stem
  version=$(pin "$name")
  stem=$(echo "$name" | tr - _)
  if [ "$kind" = sdist ]; then
    file=$(ls "$CACHE/$name-$version.tar.gz" 2>/dev/null || true)
    if [ -z "$file" ]; then
      "$PY" -m pip download --quiet --no-deps --no-binary :all: --dest "$CACHE" "$name==$version" >&2
      file=$CACHE/$name-$version.tar.gz
    fi
  else
    file=$(ls "$CACHE/$stem-$version"-*.whl 2>/dev/null | grep -E 'cp312|py3-none' | head -n1 || true)
    if [ -z "$file" ]; then
      "$PY" -m pip download --quiet --no-deps --only-binary :all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --dest "$CACHE" "$name==$version" >&2
      file=$(ls "$CACHE/$stem-$version"-*.whl | grep -E 'cp312|py3-none' | head -n1)
    fi
  fi
  [ -f "$file" ] || { echo "assemble-worker: no $kind for $name==$version in $CACHE" >&2; exit 1; }
  echo "$file"
}

# unpack ARCHIVE OUT_DIR REGEX...: archive members whose path matches a regex,
# flattened into OUT_DIR (a wheel is a zip; an sdist a tar.gz).
unpack() {
  "$PY" - "$@" <<'PYEOF'
import os, re, shutil, sys, tarfile, zipfile
archive, out, pats = sys.argv[1], sys.argv[2], [re.compile(p) for p in sys.argv[3:]]
os.makedirs(out, exist_ok=True)
def want(name):
    return any(p.search(name) for p in pats)
got = 0
if archive.endswith(".whl"):
    with zipfile.ZipFile(archive) as z:
        for m in z.namelist():
            if want(m):
                with z.open(m) as src, open(os.path.join(out, os.path.basename(m)), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                got += 1
else:
    with tarfile.open(archive) as t:
        for m in t.getmembers():
            if m.isfile() and want(m.name):
                with t.extractfile(m) as src, open(os.path.join(out, os.path.basename(m.name)), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                got += 1
if got == 0:
    sys.exit(f"assemble-worker: nothing matched {sys.argv[3:]} in {archive}")
PYEOF
}

STAGE=$DEST.partial
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/fonts" "$STAGE/models"

# ONNX Runtime GPU: the runtime, the provider bridge and the CUDA provider
# (not TensorRT's: reelay does not register it, and it needs libnvinfer).
ORT=$(pin onnxruntime-gpu)
unpack "$(fetch onnxruntime-gpu wheel)" "$STAGE/lib" \
  "^onnxruntime/capi/libonnxruntime\.so\.$ORT$" \
  '^onnxruntime/capi/libonnxruntime_providers_(shared|cuda)\.so$'
# NVIDIA's CUDA-side libraries: every shared library of each wheel except the
# BLAS shim and NVRTC's alternative ABI builds.
for dist in nvidia-cuda-runtime nvidia-cublas nvidia-curand nvidia-cuda-nvrtc nvidia-cudnn-cu13; do
  unpack "$(fetch "$dist" wheel)" "$STAGE/lib" '^nvidia/[^/]+/lib/lib(?!nvblas)[^/]*\.so(\.[0-9]+)*$'
done
rm -f "$STAGE"/lib/*.alt.so*
unpack "$(fetch imageio-ffmpeg wheel)" "$STAGE/bin" '^imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-'
mv "$STAGE"/bin/ffmpeg-linux-x86_64-* "$STAGE/bin/ffmpeg"
unpack "$(fetch font-roboto sdist)" "$STAGE/fonts" '/font_roboto/files/(Roboto-Bold\.ttf|LICENSE)$'

cp "$ROOT/models/manifest.toml" "$ROOT"/models/*.onnx "$STAGE/models/"
if [ -d "$ROOT/models/LICENSES" ]; then cp -r "$ROOT/models/LICENSES" "$STAGE/models/"; fi

if [ "$BUILD" = 1 ]; then
  if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --locked --release --features cuda --bin reelay)
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/reelay" "$STAGE/bin/reelay"
  else
    # Built the way `cargo test` builds it (dev-dependency features unified),
    # so it shares every dependency already compiled for the tests.
    # tests/gpu.rs compiles here too, so `make test` builds the CUDA tests.
    (cd "$ROOT" && cargo test --locked --no-run --features cuda --test gpu_worker --test gpu)
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/debug/reelay" "$STAGE/bin/reelay"
  fi
fi

chmod 0755 "$STAGE"/bin/*
chmod 0644 "$STAGE"/lib/* "$STAGE"/fonts/* "$STAGE"/models/*.onnx "$STAGE/models/manifest.toml"
(cd "$STAGE" && find . -type f ! -name CONTENTS.sha256 | LC_ALL=C sort | xargs sha256sum >CONTENTS.sha256)
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "assemble-worker: $(find "$DEST" -type f | wc -l) files, $(du -sh "$DEST" | cut -f1) in $DEST"
