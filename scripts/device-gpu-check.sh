#!/usr/bin/env bash
# GPU compositor check on a machine with a real GPU (DESIGN §9: H100 targets).
#
#   scripts/device-gpu-check.sh --build   # here: build release binaries into ./devbin/ (stripped)
#   scripts/device-gpu-check.sh           # there: run them, print everything
#
# Runs, from ./devbin/:
#   1. the GPU parity tests (tests/gpu_parity.rs) with CLOUDMIXER_REQUIRE_GPU=1,
#   2. gpu_bench offline: 1 W3 mixer x 3000 frames (I420 upload + compose + NV12 readback,
#      3 in flight), serial and parallel upload,
#   3. gpu_bench realtime: 100 W3 mixers x 10 s at 30 fps (p50/p99 latency, how many kept up).
# Failure PNGs of the parity tests go to $OUT/gpu-parity (or ./gpu-parity-out).
# Env: FRAMES (3000), MIXERS (100), RT_SECONDS (10), CLOUDMIXER_ADAPTER, WGPU_BACKEND pass through.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--build" ]; then
  set -e
  mkdir -p devbin
  cargo build --release --bin gpu_bench
  cp target/release/gpu_bench devbin/gpu_bench
  exe=$(cargo test --release --no-run --test gpu_parity --message-format=json 2>/dev/null \
        | grep -o '"executable":"[^"]*"' | grep gpu_parity | tail -1 | cut -d'"' -f4)
  [ -n "$exe" ] || { echo "could not find the gpu_parity test executable" >&2; exit 1; }
  cp "$exe" devbin/gpu_parity
  strip devbin/gpu_bench devbin/gpu_parity
  ls -la devbin/
  exit 0
fi

[ -x devbin/gpu_bench ] && [ -x devbin/gpu_parity ] || {
  echo "devbin/gpu_bench and devbin/gpu_parity are missing: run '$0 --build' first" >&2; exit 2; }

FRAMES=${FRAMES:-3000}
MIXERS=${MIXERS:-100}
SECONDS_RT=${RT_SECONDS:-10}
export CLOUDMIXER_PARITY_OUT="${OUT:-$PWD/gpu-parity-out}/gpu-parity"
status=0

echo "=== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "(no nvidia-smi)"
nproc; uname -r

echo "=== 1. parity tests (CLOUDMIXER_REQUIRE_GPU=1)"
CLOUDMIXER_REQUIRE_GPU=1 timeout 300 devbin/gpu_parity --test-threads 4 --nocapture 2>&1 | grep -v '^pipelined_[0-9]' \
  || { echo "PARITY FAILED (exit $?)"; status=1; }

echo "=== 2a. offline: 1 x W3, $FRAMES frames, NV12 readback, serial upload"
timeout 300 devbin/gpu_bench --workload W3 --output nv12 --hardware-only offline --frames "$FRAMES" --inflight 3 \
  || { echo "OFFLINE FAILED (exit $?)"; status=1; }
echo "=== 2b. offline: same, parallel upload"
timeout 300 devbin/gpu_bench --workload W3 --output nv12 --hardware-only offline --frames "$FRAMES" --inflight 3 --parallel-upload \
  || { echo "OFFLINE (parallel) FAILED (exit $?)"; status=1; }

echo "=== 3. realtime: $MIXERS x W3 @ 30 fps for $SECONDS_RT s, NV12 readback"
timeout 300 devbin/gpu_bench --workload W3 --output nv12 --hardware-only realtime --mixers "$MIXERS" --seconds "$SECONDS_RT" \
  || { echo "REALTIME FAILED (exit $?)"; status=1; }

echo "=== done (status $status)"
exit $status
