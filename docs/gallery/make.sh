#!/usr/bin/env bash
# Regenerates the gallery PNGs with `cloudmixer snapshot` (run from the repository root after
# `cargo build --release`; CPU backend; %timestamp% pinned to 2026-11-26 12:00:00 UTC).
set -euo pipefail
BIN=${BIN:-target/release/cloudmixer}
G=docs/gallery
C=fixtures/clips
export TZ=UTC
snap() { "$BIN" snapshot --backend cpu --clock 1795694400 "$@"; }
snap --config $G/text.json --input cam=$C/cam4_1280x720_30.mp4@2 --out $G/text.png
snap --config $G/timestamp.json --input Usr1.-1=$C/cam1_640x480_15.mp4@1 \
  --input Usr2.-1=$C/cam4_1280x720_30.mp4@1 --out $G/timestamp.png
snap --config $G/placeholder.json --input Usr1.-1=$C/cam1_640x480_15.mp4@1 \
  --input Usr2.-1=$C/cam8_480x270_30.mp4@1 --picture avatar3=$C/still_160x120.jpg \
  --out $G/placeholder.png
snap --config $G/background.json --input Usr1.-1=$C/cam9_320x240_15.mp4@1 \
  --picture room=$C/still_160x90.png --picture logo=$C/still_160x120.jpg --out $G/background.png
snap --config $G/rotation.json --input phone=$C/phone_rot90_320x180_30.mp4@1 --out $G/rotation.png
snap --config $G/types.json --input _cr_localscreen_=$C/cam8_480x270_30.mp4@1 \
  --input _cr_media_=$C/cam9_320x240_15.mp4@1 --input _cr_screen_=$C/cam4_1280x720_30.mp4@1 \
  --input _cr_whiteboard_=$C/still_160x90.png --out $G/types.png
