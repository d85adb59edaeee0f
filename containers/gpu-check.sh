#!/usr/bin/env bash
# `make gpu-check`: the one-shot check of the GPU worker on a machine with an
# NVIDIA GPU (driver 580+, ~16 cores, the package registries reachable).
#
#   1. installs what it needs into .tools/ (make setup; the worker's pinned
#      ONNX Runtime GPU + CUDA 13 + cuDNN 9 libraries via assemble-worker.sh);
#   2. builds reelay --release --features cuda (with the CUDA tests);
#   3. runs `reelay doctor --device cuda` and the GPU-only tests
#      (tests/gpu.rs: provider registration, fp16 vs fp32 PSNR, batch 1 vs 4,
#      IoBinding vs CPU), which are ignored on machines without a GPU;
#   4. runs `reelay bench gpu`: realesr-general-x4v3 at 640x360, fp16/fp32,
#      batch 1/2/4/8 (frames/s, TFLOP/s, T4 projection), the frame step vs
#      the model alone, detection on CUDA; and prints one table.
#
# Everything it writes goes to $OUT when set (else .cache/gpu-check):
# gpu-check.txt (the table), gpu-check.json, gpu-check.log.
#
#   bash containers/gpu-check.sh             # the real check
#   bash containers/gpu-check.sh --dry-run   # CPU, tiny sizes, no install or
#                                            # build: REELAY_BIN=path/to/reelay
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT_DIR=${OUT:-$ROOT/.cache/gpu-check}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu-check.log
: >"$LOG"
START=$(date +%s)
say() { echo "[gpu-check +$(($(date +%s) - START))s] $*" | tee -a "$LOG" >&2; }
FAILED=()

if [ "${1:-}" = --dry-run ]; then
  BIN=${REELAY_BIN:?--dry-run needs REELAY_BIN=path/to/reelay}
  say "dry run on the CPU with $BIN"
  "$BIN" bench gpu --device cpu --crop 32x18 --batches 1,2 --precisions fp32 --seconds 0.2 \
    --frame-frames 4 --frame-source 64x36 --detect-seconds 1 --detect-source 160x90 \
    --scratch "$OUT_DIR/scratch" --out "$OUT_DIR/gpu-check.txt" 2>>"$LOG"
  rm -rf "$OUT_DIR/scratch"
  say "table: $OUT_DIR/gpu-check.txt"
  exit 0
fi

say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n1)"
nvidia-smi -L >/dev/null 2>&1 || { say "no NVIDIA GPU here (nvidia-smi -L failed): this check needs one"; exit 1; }

say "install: make setup, then the worker's libraries into .tools/gpu-worker"
make setup >>"$LOG" 2>&1
IMAGE=$ROOT/.tools/gpu-worker
bash containers/assemble-worker.sh --skip-build "$IMAGE" >>"$LOG" 2>&1

say "build: cargo test --release --features cuda,bench --no-run (also builds bin/reelay)"
cargo test --release --locked --features cuda,bench --no-run --test gpu >>"$LOG" 2>&1
install -m 0755 target/release/reelay "$IMAGE/bin/reelay"

# The worker image's environment, with /opt/reelay here.
export ORT_DYLIB_PATH=$IMAGE/lib/libonnxruntime.so.1.31.1
export REELAY_FFMPEG=$IMAGE/bin/ffmpeg REELAY_FONT=$IMAGE/fonts/Roboto-Bold.ttf REELAY_MODELS_DIR=$IMAGE/models

say "doctor --device cuda"
if ! "$IMAGE/bin/reelay" doctor --device cuda 2>&1 | tee -a "$LOG" >"$OUT_DIR/doctor.txt"; then
  FAILED+=("doctor")
fi
cat "$OUT_DIR/doctor.txt" >&2

say "GPU-only tests (tests/gpu.rs)"
if ! cargo test --release --locked --features cuda,bench --test gpu -- --ignored --test-threads=1 --nocapture \
  >"$OUT_DIR/tests.txt" 2>&1; then
  FAILED+=("tests/gpu.rs")
fi
{ grep -E '^test |PSNR|test result|panicked' "$OUT_DIR/tests.txt" || tail -n 30 "$OUT_DIR/tests.txt"; } | tee -a "$LOG" >&2

say "benchmarks: reelay bench gpu"
if ! "$IMAGE/bin/reelay" bench gpu --device cuda --scratch "$ROOT/.cache/bench" \
  --out "$OUT_DIR/gpu-check.txt" 2>>"$LOG"; then
  FAILED+=("bench gpu")
fi

say "done in $(($(date +%s) - START)) s; table in $OUT_DIR/gpu-check.txt"
if [ "${#FAILED[@]}" -gt 0 ]; then
  say "FAILED: ${FAILED[*]} (see $LOG)"
  exit 1
fi
