# syntax=docker/dockerfile:1.7
# reelay GPU worker: `reelay work --device cuda` with ONNX Runtime GPU 1.31.1
# (CUDA 13, cuDNN 9) and a static FFmpeg with NVENC/NVDEC.
# Build from the repository root:
#   docker build -f containers/gpu-worker.Dockerfile -t reelay-gpu-worker .
# Everything under /opt/reelay is laid out by containers/assemble-worker.sh,
# the script `make test` runs on the host into target/worker-image (checked by
# tests/gpu_worker.rs), with the versions pinned in containers/worker-libs.txt.
# CUDA 13 only: the ECS GPU-optimized AMI ships NVIDIA driver 580, which runs
# CUDA 13 (README, "GPU worker").

ARG RUST_VERSION=1.95

# ---- assemble: reelay --features cuda, ONNX Runtime GPU and its CUDA libraries, FFmpeg, font, models ----
FROM rust:${RUST_VERSION}-bookworm AS assemble
# DL3008: the base image tag pins the Debian release; pip only downloads wheels here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY models ./models
COPY containers/assemble-worker.sh containers/worker-libs.txt ./containers/
# Cache mounts keep the registry, target dir and wheels between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    --mount=type=cache,target=/root/.cache/reelay-pip,sharing=locked \
    REELAY_PIP_CACHE=/root/.cache/reelay-pip PYTHON=python3 \
    bash containers/assemble-worker.sh --profile release /out

# ---- runtime: the CUDA 13.0.2 base (its NVIDIA_REQUIRE_CUDA makes the container
# runtime refuse a driver too old for CUDA 13); the CUDA libraries themselves
# are the pinned ones in /opt/reelay/lib, which reelay loads from beside ONNX Runtime.
FROM nvidia/cuda:13.0.2-base-ubuntu24.04 AS runtime
# tini reaps FFmpeg children and forwards SIGTERM (ECS scale-in, deploys).
# DL3008: Debian/Ubuntu point releases replace exact versions, so pins break rebuilds;
# the base image tag pins the release and these packages take its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin reelay
COPY --from=assemble /out/ /opt/reelay/
# video: the NVIDIA runtime mounts the NVENC/NVDEC driver libraries only when asked.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    PATH=/opt/reelay/bin:$PATH \
    ORT_DYLIB_PATH=/opt/reelay/lib/libonnxruntime.so.1.31.1 \
    REELAY_FFMPEG=/opt/reelay/bin/ffmpeg \
    REELAY_FONT=/opt/reelay/fonts/Roboto-Bold.ttf \
    REELAY_MODELS_DIR=/opt/reelay/models \
    REELAY_DEVICE=cuda \
    REELAY_LOG_FORMAT=json
USER 10001:10001
WORKDIR /tmp
# For `docker run`; ECS ignores HEALTHCHECK and runs the same command from the
# task definition (infra/aws/lib/reelay-stack.ts).
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
  CMD ["/opt/reelay/bin/reelay", "doctor", "--quick", "--device", "cuda"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/reelay/bin/reelay"]
CMD ["work", "--device", "cuda"]
