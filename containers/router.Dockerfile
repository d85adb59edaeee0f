# syntax=docker/dockerfile:1.7
# reelay router / CPU image: `reelay route` with FFmpeg for clip extraction and compilation.
# Build from the repository root:
#   docker build -f containers/router.Dockerfile -t reelay-router .
# The router never loads a GPU: reelay is built without the `cuda` feature.

ARG RUST_VERSION=1.95

# ---- fetch: static FFmpeg (imageio-ffmpeg wheel) and the caption font (font-roboto sdist) ----
FROM python:3.12-slim-bookworm AS fetch
WORKDIR /fetch
RUN set -eux; \
    pip download --no-cache-dir --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 -d wheels "imageio-ffmpeg==0.8.1"; \
    python -m zipfile -e wheels/imageio_ffmpeg-*.whl unpacked/; \
    install -D -m 0755 unpacked/imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v9.0.2 /out/bin/ffmpeg; \
    pip download --no-cache-dir --no-deps --no-binary :all: -d sdist "font-roboto==0.0.1"; \
    mkdir -p /out/fonts; \
    tar -xzf sdist/font-roboto-0.0.1.tar.gz -C /out/fonts --strip-components=3 \
      font-roboto-0.0.1/font_roboto/files/Roboto-Bold.ttf font-roboto-0.0.1/font_roboto/files/LICENSE; \
    chmod 0644 /out/fonts/*; \
    rm -rf wheels unpacked sdist

# ---- build: the reelay binary ----
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    cargo build --release --locked --bin reelay; \
    install -D -m 0755 target/release/reelay /out/bin/reelay

# ---- runtime ----
FROM debian:bookworm-slim AS runtime
# DL3008: Debian/Ubuntu point releases replace exact versions, so pins break rebuilds;
# the base image tag pins the release and these packages take its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin reelay
COPY --from=fetch /out/bin/ffmpeg /opt/reelay/bin/ffmpeg
COPY --from=fetch /out/fonts/ /opt/reelay/fonts/
COPY --from=build /out/bin/reelay /opt/reelay/bin/reelay
ENV PATH=/opt/reelay/bin:$PATH \
    REELAY_FFMPEG=/opt/reelay/bin/ffmpeg \
    REELAY_FONT=/opt/reelay/fonts/Roboto-Bold.ttf \
    REELAY_DEVICE=cpu \
    REELAY_LOG_FORMAT=json
USER 10001:10001
WORKDIR /tmp
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/opt/reelay/bin/reelay", "--version"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/reelay/bin/reelay"]
CMD ["route"]
