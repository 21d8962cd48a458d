#!/usr/bin/env bash
# Runs the library's CUDA selective scan kernels (src/ops/cuda/selective_scan.cu, forward, and
# selective_scan_backward.cu) on the CPU through host_emulation.h, against the CPU ops, on odd shapes
# (scan_library_check.cpp). Needs a CPU build of the library for the reference ops:
#   cmake -S . -B build-cpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAMBALM_CUDA=OFF && cmake --build build-cpu --target sambalm
#   dev/cuda/host_emu/check_library_scan.sh [--quick]
# Environment: BUILD (default build-cpu), EMU_BUILD_DIR (default /tmp/host_emu_scan), SANITIZE=0 to
# build without AddressSanitizer (faster).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-cpu}
work=${EMU_BUILD_DIR:-/tmp/host_emu_scan}
mkdir -p "$work/src/ops/cuda"
python3 "$HERE/to_host.py" "$ROOT/src/ops/cuda" "$work/src/ops/cuda" selective_scan.cu selective_scan_backward.cu \
  scan_common.cuh mixer_common.cuh
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
san=(-fsanitize=address,undefined -fno-omit-frame-pointer)
[ "${SANITIZE:-1}" = 0 ] && san=()
inc=(-I"$work/src" -I"$ROOT/src" -I"$CUDA_INC")
flags=(-std=c++20 -O1 -g -w "${san[@]}")
emu=(-include "$HERE/host_emulation.h" -x c++)
g++ "${flags[@]}" "${emu[@]}" "${inc[@]}" -c "$work/src/ops/cuda/selective_scan.cu" -o "$work/fwd.o" &
g++ "${flags[@]}" "${emu[@]}" -DEMU_SECONDARY_TU "${inc[@]}" -c "$work/src/ops/cuda/selective_scan_backward.cu" \
  -o "$work/bwd.o" &
wait
g++ "${flags[@]}" "${inc[@]}" -c "$HERE/scan_library_check.cpp" -o "$work/main.o"
g++ "${flags[@]}" "${inc[@]}" -c "$ROOT/src/ops/cuda/scan_sizes.cpp" -o "$work/sizes.o"
g++ "${san[@]}" "$work/main.o" "$work/fwd.o" "$work/bwd.o" "$work/sizes.o" "$BUILD/libsambalm.a" -lfmt -fopenmp \
  -lopenblas -lpthread -o "$work/scan_library_check"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0} OMP_NUM_THREADS=1 EMU_SMEM_FILL=${EMU_SMEM_FILL:-255} \
  "$work/scan_library_check" "$@"
