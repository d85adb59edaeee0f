"""Make the fp16 variants of reelay's upscalers, and check them against fp32.

Run it through `bash models/fp16.sh` (which creates the pinned venv).

For every model in models/manifest.toml that has a [model.fp16] table:
  1. convert the fp32 ONNX file with onnxconverter-common's float16
     conversion (keep_io_types=True: inputs and outputs stay float32, so
     reelay feeds both precisions the same tensors);
  2. write it to .cache/models/<fp16 file>, and compare its sha256 with the
     manifest's (the conversion is deterministic for pinned tool versions);
  3. run fp32 and fp16 with ONNX Runtime on a real photo (scikit-image's
     astronaut.png, area-downscaled x4 to 128x128) and print the max and mean
     absolute difference of the clamped outputs and the PSNR of fp16 against
     fp32. Fails below --min-psnr.

On the CPU, ONNX Runtime has no fp16 Conv kernel on x86 and inserts casts, so
the arithmetic runs in fp32 while weights and the tensors between nodes are
fp16: the check measures fp16 storage, which is what the GPU path also uses
(cuDNN accumulates fp16 convolutions in fp32).

--install copies the converted files into models/ (commit them, with their
sha256 in the manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxconverter_common import float16
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
OUT = ROOT / ".cache" / "models"
PHOTO = ROOT / ".tools" / "testdata" / "astronaut.png"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(fp16)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".part")
    onnx.save(fp16, str(tmp))
    tmp.replace(dst)


def test_input() -> np.ndarray:
    """astronaut.png (512x512), area-downscaled x4: 1x3x128x128 in 0..1."""
    img = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32) / 255.0
    h, w, _ = img.shape
    small = img.reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
    return np.ascontiguousarray(small.transpose(2, 0, 1)[None])


def run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    return np.clip(y, 0.0, 1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--install", action="store_true", help="copy the fp16 files into models/")
    ap.add_argument("--min-psnr", type=float, default=40.0, help="fail below this PSNR (dB)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args()

    manifest = tomllib.loads((MODELS / "manifest.toml").read_text())
    x = test_input()
    reports, ok = [], True
    for m in manifest["model"]:
        if "fp16" not in m:
            continue
        src = MODELS / m["file"]
        if sha256(src) != m["sha256"]:
            print(f"{src}: sha256 differs from the manifest; restore the file first", file=sys.stderr)
            return 1
        dst = OUT / m["fp16"]["file"]
        convert(src, dst)
        digest = sha256(dst)
        want = m["fp16"].get("sha256", "")
        y32, y16 = run(src, x), run(dst, x)
        diff = np.abs(y32.astype(np.float64) - y16.astype(np.float64))
        mse = float((diff**2).mean())
        psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
        # The same comparison after conversion to 8-bit pixels, as reelay outputs them.
        q32 = np.round(y32 * 255).astype(np.int16)
        q16 = np.round(y16 * 255).astype(np.int16)
        r = {
            "model": m["name"],
            "fp16_file": str(dst.relative_to(ROOT)),
            "bytes": dst.stat().st_size,
            "sha256": digest,
            "manifest_sha256_matches": digest == want,
            "input": "astronaut.png area-downscaled x4, 1x3x128x128",
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "psnr_db": psnr,
            "max_abs_diff_u8": int(np.abs(q32 - q16).max()),
            "mean_abs_diff_u8": float(np.abs(q32 - q16).mean()),
        }
        reports.append(r)
        if psnr < args.min_psnr:
            ok = False
        if args.install:
            shutil.copyfile(dst, MODELS / m["fp16"]["file"])
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for r in reports:
            print(
                f"{r['model']}: fp16 {r['bytes']} bytes sha256 {r['sha256']}"
                f" ({'matches' if r['manifest_sha256_matches'] else 'DIFFERS from'} the manifest)\n"
                f"  vs fp32 on {r['input']}: max |diff| {r['max_abs_diff']:.3e},"
                f" mean |diff| {r['mean_abs_diff']:.3e}, PSNR {r['psnr_db']:.2f} dB;"
                f" 8-bit: max {r['max_abs_diff_u8']}, mean {r['mean_abs_diff_u8']:.4f}"
            )
    if not ok:
        print(f"fp16 check failed: PSNR below {args.min_psnr} dB", file=sys.stderr)
        return 1
    for r in reports:
        if not r["manifest_sha256_matches"]:
            print(
                f"note: {r['model']}'s fp16 sha256 differs from models/manifest.toml; "
                "if the tool versions changed on purpose, run with --install and update the manifest",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
