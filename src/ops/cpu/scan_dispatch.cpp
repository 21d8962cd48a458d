// Picks the selective-scan kernel table (scan_internal.h) once per process.
#include "ops/cpu/isa.h"
#include "ops/cpu/scan_internal.h"

namespace sambalm::ops::cpu::scan {

template <typename T>
const Kernels<T>& generic_kernels() {
  static const Kernels<T> k{"generic", generic::scan_block<T, true>, generic::scan_block<T, false>,
                            generic::backward_channel<T>};
  return k;
}

template <typename T>
const Kernels<T>& kernels() {
  static const Kernels<T>& k = cpu_isa() == Isa::Avx2 ? *avx2_kernels<T>() : generic_kernels<T>();
  return k;
}

template const Kernels<float>& generic_kernels<float>();
template const Kernels<double>& generic_kernels<double>();
template const Kernels<float>& kernels<float>();
template const Kernels<double>& kernels<double>();

}  // namespace sambalm::ops::cpu::scan
