#!/usr/bin/env bash
# GPU compositor check on a machine with a real GPU (DESIGN §9: H100 targets).
#
#   scripts/device-gpu-check.sh --build   # here: build release binaries into ./devbin/ (stripped)
#   scripts/device-gpu-check.sh           # there: run them, print everything
#
# Runs, from ./devbin/:
#   1. the GPU parity and batch-renderer tests (tests/gpu_parity.rs, tests/gpu_batch.rs) with
#      CLOUDMIXER_REQUIRE_GPU=1,
#   2. gpu_bench offline: 1 W3 mixer x 3000 frames (I420 upload + compose + NV12 readback,
#      3 in flight): the one-mixer compositor, then the batch renderer, serial and parallel upload,
#   3. gpu_bench realtime: 100 W3 mixers x 10 s at 30 fps (p50/p99 latency, how many kept up),
#      one-mixer compositors vs the batch renderer,
#   4. bench_sweep (`cloudmixer bench` without FFmpeg): the W3 real-time sweep through the batch
#      renderer, table + JSON + plot into $OUT.
# Failure PNGs of the parity tests go to $OUT/gpu-parity (or ./gpu-parity-out).
# Env: FRAMES (3000), MIXERS (100), RT_SECONDS (10), SWEEP (1,16,32,64,100,128), GATHERS (batch
# gather windows in µs for step 3: 3000 0 8000), STEPS (which steps after 1: 234, and 5 = the
# batched real-time run at each of SWEEP_RT mixer counts, staggered ticks), CLOUDMIXER_ADAPTER,
# WGPU_BACKEND pass through.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--build" ]; then
  set -e
  mkdir -p devbin
  cargo build --release --bin gpu_bench --example bench_sweep
  cp target/release/gpu_bench devbin/gpu_bench
  cp target/release/examples/bench_sweep devbin/bench_sweep
  for t in gpu_parity gpu_batch; do
    exe=$(cargo test --release --no-run --test $t --message-format=json 2>/dev/null \
          | grep -o '"executable":"[^"]*"' | grep "/$t-" | tail -1 | cut -d'"' -f4)
    [ -n "$exe" ] || { echo "could not find the $t test executable" >&2; exit 1; }
    cp "$exe" devbin/$t
  done
  strip devbin/gpu_bench devbin/bench_sweep devbin/gpu_parity devbin/gpu_batch
  # the text tests and the plot need the fonts the CI box has (the device has none)
  mkdir -p devbin/fonts
  cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf devbin/fonts/
  ls -la devbin/
  exit 0
fi

[ -x devbin/gpu_bench ] && [ -x devbin/gpu_parity ] && [ -x devbin/gpu_batch ] && [ -x devbin/bench_sweep ] || {
  echo "devbin/gpu_bench and devbin/gpu_parity are missing: run '$0 --build' first" >&2; exit 2; }

if [ -d devbin/fonts ] && [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  mkdir -p /usr/share/fonts/truetype/dejavu /usr/share/fonts/truetype/droid
  cp devbin/fonts/DejaVuSans.ttf /usr/share/fonts/truetype/dejavu/
  cp devbin/fonts/DroidSansFallbackFull.ttf /usr/share/fonts/truetype/droid/
fi
FRAMES=${FRAMES:-3000}
MIXERS=${MIXERS:-100}
SECONDS_RT=${RT_SECONDS:-10}
export CLOUDMIXER_PARITY_OUT="${OUT:-$PWD/gpu-parity-out}/gpu-parity"
status=0

echo "=== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "(no nvidia-smi)"
nproc; uname -r

echo "=== 1. parity tests (CLOUDMIXER_REQUIRE_GPU=1)"
CLOUDMIXER_REQUIRE_GPU=1 timeout 300 devbin/gpu_parity --test-threads 4 2>&1 | tail -4 \
  || { echo "PARITY FAILED (exit $?)"; status=1; }
echo "=== 1b. batch renderer tests"
CLOUDMIXER_REQUIRE_GPU=1 timeout 120 devbin/gpu_batch 2>&1 | tail -8 \
  || { echo "BATCH TESTS FAILED (exit $?)"; status=1; }

STEPS=${STEPS:-1234}
case $STEPS in *2*)
for b in "" --batched; do
  for p in "" --parallel-upload; do
    echo "=== 2. offline ${b:-one-mixer}: 1 x W3, $FRAMES frames, NV12 readback ${p}"
    timeout 120 devbin/gpu_bench --workload W3 --output nv12 --hardware-only $b offline --frames "$FRAMES" --inflight 3 $p \
      || { echo "OFFLINE FAILED (exit $?)"; status=1; }
  done
done;; esac
case $STEPS in *3*)
echo "=== 3. realtime one-mixer compositors: $MIXERS x W3 @ 30 fps for $SECONDS_RT s, NV12 readback"
timeout 120 devbin/gpu_bench --workload W3 --output nv12 --hardware-only realtime --mixers "$MIXERS" --seconds "$SECONDS_RT" \
  || { echo "REALTIME FAILED (exit $?)"; status=1; }
for g in ${GATHERS:-3000 0 8000}; do
  echo "=== 3. realtime batched, gather window ${g} us: $MIXERS x W3 @ 30 fps for $SECONDS_RT s, NV12 readback"
  CLOUDMIXER_BATCH_GATHER_US=$g timeout 120 devbin/gpu_bench --workload W3 --output nv12 --hardware-only --batched realtime --mixers "$MIXERS" --seconds "$SECONDS_RT" \
    || { echo "REALTIME FAILED (exit $?)"; status=1; }
done;; esac
case $STEPS in *5*)
for m in ${SWEEP_RT:-16 32 64 100}; do
  echo "=== 5. realtime batched, staggered ticks: $m x W3 @ 30 fps for $SECONDS_RT s"
  timeout 60 devbin/gpu_bench --workload W3 --output nv12 --hardware-only --batched realtime --mixers "$m" --seconds "$SECONDS_RT" \
    || { echo "REALTIME FAILED (exit $?)"; status=1; }
done;; esac
case $STEPS in *4*)
echo "=== 4. sweep through the batch renderer (bench --backend gpu)"
mkdir -p "${OUT:-.}"
timeout 240 devbin/bench_sweep --backend gpu --workload W3 --realtime --mixers ${SWEEP:-1,16,32,64,100,128} --frames 150 \
  --json "${OUT:-.}/h100_w3_batched.json" --plot "${OUT:-.}/h100_w3_batched.png" \
  || { echo "SWEEP FAILED (exit $?)"; status=1; };; esac
echo "=== done (status $status)"
exit $status
