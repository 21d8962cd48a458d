#include "ops/cpu/isa.h"

#include <cstdlib>
#include <cstring>

namespace sambalm::ops::cpu {

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::Baseline:
      return true;
    case Isa::Avx2:
#if defined(__x86_64__) && defined(__GNUC__)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

Isa cpu_isa() {
  static const Isa isa = [] {
    const char* force = std::getenv("SAMBALM_CPU_ISA");
    if (force && std::strcmp(force, "baseline") == 0) return Isa::Baseline;
    return cpu_supports(Isa::Avx2) ? Isa::Avx2 : Isa::Baseline;
  }();
  return isa;
}

const char* isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "baseline"; }

}  // namespace sambalm::ops::cpu
