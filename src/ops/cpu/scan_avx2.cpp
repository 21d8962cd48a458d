// The selective-scan kernels (scan_kernels.h) compiled for AVX2 + FMA, used when the CPU has them
// (x86-64 only). -O3-level vectorisation is asked for here too: at the project's -O2 GCC's cheap
// vectorizer cost model leaves much of the 8-wide exp/recurrence loop on the table (measured ~2x).
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ops/cpu/isa.h"
#include "ops/cpu/scan_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("O3")
namespace sambalm::ops::cpu::scan::avx2 {
#include "ops/cpu/scan_kernels.h"  // NOLINT(build/include): compiled into this namespace

template <typename T>
const Kernels<T>* table() {
  static const Kernels<T> k{"avx2", scan_block<T, true>, scan_block<T, false>, backward_channel<T>};
  return &k;
}
}  // namespace sambalm::ops::cpu::scan::avx2
#pragma GCC pop_options
#endif

namespace sambalm::ops::cpu::scan {

template <typename T>
const Kernels<T>* avx2_kernels() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu_supports(Isa::Avx2)) return avx2::table<T>();
#endif
  return nullptr;
}

template const Kernels<float>* avx2_kernels<float>();
template const Kernels<double>* avx2_kernels<double>();

}  // namespace sambalm::ops::cpu::scan
