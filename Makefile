# The two commands a new user needs:
#   make demo   runs the demo job on a local folder bucket ($REELAY_ROOT, default ./reelay-data)
#   make test   runs the whole test suite
# Both install what they need into .tools/ and .cache/ (git-ignored), from the package registries.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
TOOLS := $(CURDIR)/.tools
CACHE := $(CURDIR)/.cache
PIP_DOWNLOAD := $(PYTHON) -m pip download --quiet --no-deps --only-binary :all: --dest $(CACHE)/pip
REELAY_ROOT ?= reelay-data
# The GPU worker image's contents, laid out on this machine by the image's own
# recipe (containers/assemble-worker.sh) for the CUDA chain tests.
export REELAY_WORKER_IMAGE := $(TOOLS)/gpu-worker
export REELAY_FFMPEG := $(TOOLS)/bin/ffmpeg
export REELAY_FONT := $(TOOLS)/fonts/Roboto-Bold.ttf
export CARGO_TERM_COLOR ?= never

# Pinned versions of everything fetched.
IMAGEIO_FFMPEG := 0.8.1
FONT_ROBOTO := 0.0.1
SCIKIT_IMAGE := 0.25.2

.PHONY: setup tools demo test test-rust test-infra lint bench reliability clean-tools worker-image gpu-check

setup: $(TOOLS)/bin/ffmpeg $(TOOLS)/fonts/Roboto-Bold.ttf $(TOOLS)/testdata/.done $(TOOLS)/onnxruntime/lib/libonnxruntime.so

# ONNX Runtime 1.31.1 (CPU) from the onnxruntime wheel, loaded by `ort` at run time.
$(TOOLS)/onnxruntime/lib/libonnxruntime.so:
	PYTHON=$(PYTHON) bash models/setup-ort.sh

# Static FFmpeg 9 (libx264, drawtext, NVENC) from the imageio-ffmpeg wheel.
$(TOOLS)/bin/ffmpeg:
	mkdir -p $(CACHE)/pip $(TOOLS)/bin
	$(PIP_DOWNLOAD) imageio-ffmpeg==$(IMAGEIO_FFMPEG)
	$(PYTHON) -c 'import sys, zipfile, glob; \
	  w = zipfile.ZipFile(glob.glob("$(CACHE)/pip/imageio_ffmpeg-$(IMAGEIO_FFMPEG)-*.whl")[0]); \
	  n = [x for x in w.namelist() if "/binaries/ffmpeg-linux" in x][0]; \
	  open("$@.partial", "wb").write(w.read(n))'
	chmod +x $@.partial && mv $@.partial $@
	$@ -hide_banner -version | head -n 1

# Roboto (Apache-2.0) for captions, from the font-roboto sdist.
$(TOOLS)/fonts/Roboto-Bold.ttf:
	mkdir -p $(CACHE)/pip $(TOOLS)/fonts
	$(PYTHON) -m pip download --quiet --no-deps --no-binary :all: --dest $(CACHE)/pip font-roboto==$(FONT_ROBOTO)
	tar -xzf $(CACHE)/pip/font-roboto-$(FONT_ROBOTO).tar.gz -C $(TOOLS)/fonts --strip-components=3 \
	  font-roboto-$(FONT_ROBOTO)/font_roboto/files/Roboto-Bold.ttf font-roboto-$(FONT_ROBOTO)/font_roboto/files/LICENSE

# Public-domain test photos (astronaut, camera, grass) from the scikit-image wheel.
$(TOOLS)/testdata/.done:
	mkdir -p $(CACHE)/pip $(TOOLS)/testdata
	$(PIP_DOWNLOAD) scikit-image==$(SCIKIT_IMAGE)
	$(PYTHON) -c 'import zipfile, glob; \
	  w = zipfile.ZipFile(sorted(glob.glob("$(CACHE)/pip/scikit_image-$(SCIKIT_IMAGE)-*.whl"))[0]); \
	  [open("$(TOOLS)/testdata/" + n, "wb").write(w.read("skimage/data/" + n)) for n in ("astronaut.png", "camera.png", "grass.png")]'
	touch $@

# Test-only Python tools (moto server for S3+SQS) in a project-local venv, and
# the CDK app's node_modules (tests/iam_enforced.rs synthesizes the stack's policies).
tools: $(TOOLS)/venv/.done infra/aws/node_modules/.package-lock.json
infra/aws/node_modules/.package-lock.json: infra/aws/package-lock.json
	cd infra/aws && npm_config_cache=$(CACHE)/npm npm ci --no-audit --no-fund --loglevel=error
$(TOOLS)/venv/.done: tests/requirements.txt
	$(PYTHON) -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet --cache-dir $(CACHE)/pip-cache -r tests/requirements.txt
	touch $@

# What the GPU worker image ships, into .tools/gpu-worker: reelay built with
# --features cuda (dev profile, sharing target/ with the tests), ONNX Runtime
# GPU 1.31.1 and the CUDA 13 / cuDNN 9 libraries from the pinned wheels in
# containers/worker-libs.txt (about 1.3 GB of wheels, cached in .cache/pip),
# FFmpeg, the font and the models. tests/gpu_worker.rs checks it.
worker-image:
	PYTHON=$(PYTHON) bash containers/assemble-worker.sh --profile dev $(REELAY_WORKER_IMAGE)

# One shot on a machine with an NVIDIA GPU: the CUDA tests, then the GPU
# benchmarks, as one table (also written under $$OUT when set).
gpu-check:
	PYTHON=$(PYTHON) bash containers/gpu-check.sh

demo: setup
	cargo build --release --bin reelay
	./target/release/reelay demo --root "$(REELAY_ROOT)"

test: setup tools worker-image test-rust test-infra

test-rust:
	cargo test --all-targets --features bench --no-fail-fast 2>&1 | tee $(CACHE)/test-rust.log
	./.ci/summarize-tests $(CACHE)/test-rust.log

# CDK stack, R2 bridge (miniflare + moto + reelay route) and Dockerfiles, offline.
test-infra: setup tools
	# The features test-rust builds with, so its binary is reused, not rebuilt.
	cargo build --bin reelay --features bench
	bash infra/test.sh

# Every benchmark, release build; each prints ratios against a reference run.
bench: setup tools
	cargo build --release --features bench --bin reelay
	./target/release/reelay bench cpu
	./target/release/reelay bench demo
	./target/release/reelay bench router
	./target/release/reelay bench upscale --batch 4
	./target/release/reelay bench frame
	./target/release/reelay bench detect
	./target/release/reelay bench overlay
	./target/release/reelay bench placement

# The reliability suite at full size (duplicates, kill -9, long tasks, bad
# input, 5 minutes of load, store faults) against moto and the local mode;
# `make test` runs it at a reduced size. Prints one summary table.
reliability: setup tools
	REELAY_RELIABILITY=full REELAY_RELIABILITY_REPORT=$(CACHE)/reliability.txt \
	  cargo test --release --test reliability -- --nocapture --test-threads=1

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features bench -- -D warnings
	cargo clippy --all-targets --features cuda,bench -- -D warnings

clean-tools:
	rm -rf $(TOOLS)
