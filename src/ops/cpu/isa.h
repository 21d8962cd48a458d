// Which instruction set the CPU kernels use, decided once per process: the best of the builds compiled
// in (baseline x86-64 / AVX2 + FMA) that the processor supports. The build is never -march=native, so
// one binary runs on every x86-64 machine. SAMBALM_CPU_ISA=baseline forces the baseline kernels (to
// test or compare them on a machine that has AVX2). Every kernel with per-ISA builds asks this.
#pragma once

namespace sambalm::ops::cpu {

enum class Isa { Baseline, Avx2 };

// The ISA in use (cached after the first call).
Isa cpu_isa();
// Whether this processor can run `isa` (tests run every path the machine can).
bool cpu_supports(Isa isa);
const char* isa_name(Isa isa);

}  // namespace sambalm::ops::cpu
