#!/usr/bin/env bash
# Runs dev/cuda/dense_ops_check.cu on the CPU: the library's elementwise, RoPE and RMSNorm kernels
# (src/ops/cuda/{elementwise,rope,norms}.cu) rewritten by to_host.py for host_emulation.h, checked
# against the CPU ops (src/ops/cpu/, compiled as they are) on odd shapes, under AddressSanitizer.
#
#   dev/cuda/host_emu/check_dense_on_cpu.sh                       # every check (~20 minutes here)
#   EMU_SMS=1 dev/cuda/host_emu/check_dense_on_cpu.sh --norms-only  # RMSNorm's fused backward, looping blocks
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
work=${EMU_BUILD_DIR:-/tmp/host_emu_dense}
rm -rf "$work/stage" "$work/src"
mkdir -p "$work/stage" "$work/src/ops/cuda"
cp "$REPO"/src/ops/cuda/{elementwise,rope,norms}.cu "$REPO/dev/cuda/dense_ops_check.cu" "$work/stage/"
python3 "$HERE/to_host.py" "$work/stage" "$work/src/ops/cuda"
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
flags=(-std=c++20 -O1 -g -w -fsanitize=address,undefined -fno-omit-frame-pointer)
objs=()
for f in elementwise rmsnorm rope; do
  g++ "${flags[@]}" -I"$REPO/src" -c "$REPO/src/ops/cpu/$f.cpp" -o "$work/cpu_$f.o"
  objs+=("$work/cpu_$f.o")
done
g++ "${flags[@]}" -include "$HERE/host_emulation.h" -I"$CUDA_INC" -I"$work/src" -I"$REPO/src" -x c++ \
  "$work/src/ops/cuda/dense_ops_check.cu" -x none "${objs[@]}" -o "$work/dense_ops_check"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0} "$work/dense_ops_check" "$@"
