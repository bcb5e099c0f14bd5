#!/usr/bin/env bash
# Idempotent: installs what building and testing cloudmixer needs on a fresh Debian 12 machine.
set -euo pipefail
PKGS=(mesa-vulkan-drivers libvulkan1 pkg-config clang libclang-dev
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
      libavfilter-dev libavdevice-dev ffmpeg fonts-dejavu-core fonts-droid-fallback
      nginx-light libnginx-mod-rtmp)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
