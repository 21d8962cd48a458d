#!/usr/bin/env bash
# What CI runs: install packages, configure, build, run every CPU test; then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer; then each fuzz target for a bounded time.
# Usage: scripts/test.sh [--fast]   (--fast: skip the sanitizer and fuzz passes)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$PWD/.cache/ccache}

echo "== build (Release)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
echo "== tests (Release)"
ctest --test-dir build -L cpu --output-on-failure -j "$JOBS" --timeout 900

if [ "${1:-}" = "--fast" ]; then exit 0; fi

echo "== build (ASan + UBSan)"
# Without MPI: OpenMPI's own start-up allocations would read as leaks to LeakSanitizer (the MPI tests
# skip here; the Release pass above runs them).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSAMBALM_SANITIZE=address,undefined -DSAMBALM_CUDA=OFF \
  -DSAMBALM_MPI=OFF -DSAMBALM_BENCH=OFF -DCMAKE_CXX_FLAGS="-O1" >/dev/null
cmake --build build-asan -j "$JOBS"
echo "== tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  SAMBALM_TEST_SCALE=small ctest --test-dir build-asan -L cpu --output-on-failure -j "$JOBS" --timeout 1800

if [ -x scripts/fuzz.sh ]; then
  echo "== fuzz"
  bash scripts/fuzz.sh ${FUZZ_SECONDS:+"$FUZZ_SECONDS"}  # seconds per target: fuzz.sh's default unless set
fi
