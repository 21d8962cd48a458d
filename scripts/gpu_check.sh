#!/usr/bin/env bash
# GPU check of the CUDA development kernels (dev/cuda/), to run on a machine with an NVIDIA GPU:
#   1. builds each development file with nvcc for sm_90 (CUDA_ARCH overrides),
#   2. runs each file's correctness checks against its CPU reference, then its timings at the
#      issue's shapes (median of CUDA-event timings after warm-ups),
#   3. runs the checks (small shapes) under compute-sanitizer memcheck and racecheck,
#   4. prints a compact table last: kernel, shape, version, median ms, peer ms, target ms.
# Logs go to $OUT when set, else ./gpu_out. Exit status: non-zero if a build, a check or a sanitizer
# run failed.
#
#   scripts/gpu_check.sh                 everything
#   SKIP_SANITIZER=1 scripts/gpu_check.sh
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG_DIR=${OUT:-$ROOT/gpu_out}
BUILD_DIR=${BUILD_DIR:-$ROOT/build-cuda-dev}
ARCH=${CUDA_ARCH:-sm_90}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
SANITIZER=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
SANITIZER_TIMEOUT=${SANITIZER_TIMEOUT:-240}
KERNELS=(selective_scan_forward causal_conv1d_forward)
KERNELS+=(sliding_window_attention)
mkdir -p "$LOG_DIR" "$BUILD_DIR"
status=0

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: ${GIT_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  "$NVCC" --version | tail -n 2
} >"$LOG_DIR/env.txt" 2>&1
cat "$LOG_DIR/env.txt"

# ---- build (in parallel; each file is one translation unit) ----
: >"$LOG_DIR/build.log"
pids=()
for k in "${KERNELS[@]}"; do
  ( "$NVCC" -O3 -arch="$ARCH" -std=c++20 -lineinfo -Xptxas -v -o "$BUILD_DIR/$k" "$ROOT/dev/cuda/$k.cu" \
      >"$BUILD_DIR/$k.build.log" 2>&1 ) &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "BUILD FAILED: ${KERNELS[$i]}"
    status=1
  fi
  cat "$BUILD_DIR/${KERNELS[$i]}.build.log" >>"$LOG_DIR/build.log"
done
grep -E "error|spill stores" "$LOG_DIR/build.log" | grep -v " 0 bytes spill stores" || true
[ $status -eq 0 ] || { echo "build failed; see $LOG_DIR/build.log"; exit 1; }

# ---- checks and timings ----
for k in "${KERNELS[@]}"; do
  echo "== $k"
  if ! "$BUILD_DIR/$k" 2>&1 | tee "$LOG_DIR/$k.log"; then
    echo "FAILED: $k"
    status=1
  fi
done

# ---- compute-sanitizer on the checks (small shapes), the four runs side by side ----
if [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  pids=()
  names=()
  for k in "${KERNELS[@]}"; do
    for tool in memcheck racecheck; do
      timeout "$SANITIZER_TIMEOUT" "$SANITIZER" --tool "$tool" --error-exitcode 3 "$BUILD_DIR/$k" --check-only \
        >"$BUILD_DIR/san_${tool}_$k.log" 2>&1 &
      pids+=($!)
      names+=("${tool}_$k")
    done
  done
  : >"$LOG_DIR/sanitizer.log"
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$BUILD_DIR/san_${names[$i]}.log" | tail -n 1)
    echo "sanitizer ${names[$i]}: rc=$rc ${summary:-no summary}" | tee -a "$LOG_DIR/sanitizer.log"
    { echo "---- ${names[$i]}"; cat "$BUILD_DIR/san_${names[$i]}.log"; } >>"$LOG_DIR/sanitizer.log"
    [ $rc -eq 0 ] || status=1
  done
fi

# ---- compact table ----
{
  echo
  echo "| kernel | shape | version | median ms | peer ms | target ms |"
  echo "|---|---|---|---:|---:|---:|"
  for k in "${KERNELS[@]}"; do cat "$LOG_DIR/$k.log" 2>/dev/null; done | grep '^RESULT|' | awk -F'|' '{
    peer = "-"; target = "-";
    if ($2 == "selective_scan_fwd" && $3 ~ /^B4 L4096 D3072/) { peer = "0.940"; target = "0.47" }
    if ($2 == "selective_scan_fwd" && $3 ~ /^B1 L65536 D3072/) { peer = "4.535"; target = "2.3" }
    if ($2 == "causal_conv1d_fwd" && $3 ~ /^B4 L4096 D3072 W4/) { peer = "0.080"; target = "0.085" }
    if ($2 == "swa_fwd" && $3 ~ /^B4 T4096 H12 hd128 W2048/) { peer = "0.69"; target = "0.40" }
    if ($2 == "swa_fwd_bwd" && $3 ~ /^B4 T4096 H12 hd128 W2048/) { peer = "2.00"; target = "1.2" }
    printf "| %s | %s | %s | %.3f | %s | %s |\n", $2, $3, $4, $5, peer, target }'
} | tee "$LOG_DIR/summary.md"
echo "status: $status (logs in $LOG_DIR)"
exit $status
