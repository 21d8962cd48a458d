#!/usr/bin/env bash
# Runs a dev/cuda file's checks on the CPU, for machines without a GPU: the file is rewritten into
# plain C++ (to_host.py), built with g++ against host_emulation.h and AddressSanitizer, and run.
# Blocks run one after another; a block's threads run as coroutines that switch at __syncthreads, in
# a shuffled order; cp.async copies land at the latest moment their wait_group allows; device memory
# is host memory, so a kernel's out-of-bounds access is an AddressSanitizer error. Not emulated:
# votes, shuffles other than xor, atomics other than float atomicAdd, streams, timing. EMU_SMS and EMU_OCC set the
# multiprocessor count and the occupancy the launchers see (defaults 132 and 3), to try other grid
# shapes.
#
#   dev/cuda/host_emu/check_on_cpu.sh causal_conv1d_backward [version]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: check_on_cpu.sh FILE_STEM [version]}
shift
work=${EMU_BUILD_DIR:-/tmp/host_emu_build}
mkdir -p "$work"
python3 "$HERE/to_host.py" "$HERE/.." "$work/src"
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
g++ -std=c++20 -O1 -g -w -fsanitize=address,undefined -fno-omit-frame-pointer -include "$HERE/host_emulation.h" \
  -I"$CUDA_INC" -I"$work/src" -x c++ "$work/src/$name.cu" -o "$work/$name"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0} "$work/$name" "$@" --check-only
