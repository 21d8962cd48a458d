#!/usr/bin/env bash
# Runs the library's Mamba memory-bound kernels (src/ops/cuda/conv1d_backward.cuh, silu_kernels.cuh)
# on the CPU through host_emulation.h against the library's CPU ops (check_mamba_library.cpp says what
# it covers), with AddressSanitizer and UBSan. No GPU needed; says nothing about speed.
#
#   dev/cuda/host_emu/check_mamba_library.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
work=${EMU_BUILD_DIR:-/tmp/host_emu_build}
mkdir -p "$work"
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
flags=(-std=c++20 -O1 -g -w -fsanitize=address,undefined -fno-omit-frame-pointer -I"$ROOT/src")
g++ "${flags[@]}" -c "$ROOT/src/ops/cpu/conv1d.cpp" -o "$work/cpu_conv1d.o"
g++ "${flags[@]}" -c "$ROOT/src/ops/cpu/activations.cpp" -o "$work/cpu_activations.o"
g++ "${flags[@]}" -include "$HERE/host_emulation.h" -I"$CUDA_INC" -x c++ "$HERE/check_mamba_library.cpp" -x none \
  "$work/cpu_conv1d.o" "$work/cpu_activations.o" -o "$work/check_mamba_library"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0} "$work/check_mamba_library" "$@"
