#!/usr/bin/env bash
# Builds the router Lambda asset the CDK app deploys:
#   target/lambda/reelay-lambda/bootstrap   the reelay-lambda binary, stripped (~150 MB -> ~22 MB)
#   target/lambda/reelay-lambda/ffmpeg      static FFmpeg for LAMBDA_ARCH (imageio-ffmpeg 0.8.1 wheel)
#   target/lambda/reelay-lambda/fonts/Roboto-Bold.ttf  caption font (font-roboto 0.0.1)
#   target/lambda/reelay-lambda/reelay.toml if REELAY_CONFIG_FILE (default ./reelay.toml) exists
# provided.al2023 has glibc 2.34: the binary must not need anything newer.
# It ends with the check synth runs (scripts/check-lambda-asset.ts): under
# 262,144,000 bytes unzipped, FFmpeg and bootstrap for LAMBDA_ARCH, glibc <= 2.34.
set -euo pipefail
# Symbols are most of the binary's size and Lambda's 250 MiB limit counts them.
export CARGO_PROFILE_RELEASE_STRIP=symbols
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
out=${REELAY_LAMBDA_ASSET:-$repo/target/lambda/reelay-lambda}
config=${REELAY_CONFIG_FILE:-$repo/reelay.toml}
arch=${LAMBDA_ARCH:-x86_64}
case "$arch" in
  x86_64) wheel_platform=manylinux_2_28_x86_64 ffmpeg_name=ffmpeg-linux-x86_64-v9.0.2 ;;
  arm64) wheel_platform=manylinux_2_28_aarch64 ffmpeg_name=ffmpeg-linux-aarch64-v9.0.2 ;;
  *) echo "LAMBDA_ARCH=$arch: use x86_64 or arm64" >&2; exit 1 ;;
esac
glibc_max=2.34
mkdir -p "$out"

if cargo zigbuild --version >/dev/null 2>&1; then
  # zig links against glibc 2.34 exactly, whatever the build host has.
  target=$([ "$arch" = arm64 ] && echo aarch64 || echo x86_64)-unknown-linux-gnu
  cargo zigbuild --manifest-path "$repo/Cargo.toml" --release --locked --bin reelay-lambda --target "$target.$glibc_max"
  bin=$repo/target/$target/release/reelay-lambda
else
  host=$(uname -m); [ "$host" = aarch64 ] && host=arm64
  [ "$arch" = "$host" ] || { echo "cross-building for $arch needs cargo-zigbuild (cargo install cargo-zigbuild; pip install ziglang)" >&2; exit 1; }
  cargo build --manifest-path "$repo/Cargo.toml" --release --locked --bin reelay-lambda
  bin=$repo/target/release/reelay-lambda
  need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  if [ "$(printf '%s\n%s\n' "$need" "$glibc_max" | sort -V | tail -1)" != "$glibc_max" ]; then
    echo "reelay-lambda needs glibc $need but provided.al2023 has $glibc_max;" >&2
    echo "install cargo-zigbuild (cargo install cargo-zigbuild; pip install ziglang) and rerun" >&2
    exit 1
  fi
fi
install -m 0755 "$bin" "$out/bootstrap"

# ELF e_machine: 62 x86_64, 183 aarch64; refetch when missing or for the other arch.
want_machine=$([ "$arch" = arm64 ] && echo 183 || echo 62)
have_machine=$(od -An -tu2 -j18 -N2 "$out/ffmpeg" 2>/dev/null | tr -d ' ' || true)
if [ "$have_machine" != "$want_machine" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$wheel_platform" \
    --python-version 3.12 -d "$tmp" "imageio-ffmpeg==0.8.1"
  python3 -m zipfile -e "$tmp"/imageio_ffmpeg-*.whl "$tmp/x"
  install -m 0755 "$tmp/x/imageio_ffmpeg/binaries/$ffmpeg_name" "$out/ffmpeg"
fi
if [ ! -f "$out/fonts/Roboto-Bold.ttf" ]; then
  # Caption font (Apache-2.0), as the Makefile and the container images get it.
  if [ -f "$repo/.tools/fonts/Roboto-Bold.ttf" ]; then
    install -D -m 0644 "$repo/.tools/fonts/Roboto-Bold.ttf" "$out/fonts/Roboto-Bold.ttf"
  else
    tmpf=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmpf" "font-roboto==0.0.1"
    tar -xzf "$tmpf/font-roboto-0.0.1.tar.gz" -C "$tmpf" font-roboto-0.0.1/font_roboto/files/Roboto-Bold.ttf
    install -D -m 0644 "$tmpf/font-roboto-0.0.1/font_roboto/files/Roboto-Bold.ttf" "$out/fonts/Roboto-Bold.ttf"
    rm -rf "$tmpf"
  fi
fi
if [ -f "$config" ]; then install -m 0644 "$config" "$out/reelay.toml"; fi
(cd "$repo/infra/aws" && node --import tsx scripts/check-lambda-asset.ts "$out" "$arch")
echo "Lambda asset ready: $out"; ls -l "$out"
