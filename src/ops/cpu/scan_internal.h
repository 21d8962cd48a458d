// Internals shared by the CPU selective-scan files (forward, backward, decode step) and their tests.
// Not part of the op interface: layers call the ops declared in ops/mamba_ops.h.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace sambalm::ops::cpu::scan {

// Below this much work (state updates) a parallel region costs more than it saves.
inline constexpr int64_t kScanParallelWork = int64_t(1) << 16;

// Channels per task. 16 float channels = one cache line of u / delta / y per time step, and the
// block's state (16 x N) stays in L1 while the task walks through time.
constexpr int64_t kBlock = 16;

// The forward splits the sequence across threads (three passes, twice the exp work) only when the
// (batch x channel-block) tasks are too few to keep threads busy. The rule depends on shapes only,
// never on the thread count, so a run gives the same bits on any number of threads.
constexpr int64_t kMinChannelTasks = 32;

enum class ForwardMode {
  kAuto,          // by the rule above
  kChannels,      // one pass per (batch, channel block) through the whole sequence
  kSequenceSplit  // chunks scanned concurrently from zero, boundaries carried, chunks rescanned
};

namespace generic {
#include "ops/cpu/scan_kernels.h"  // NOLINT(build/include): compiled into this namespace
}  // namespace generic

// The kernels of one instruction set, called through pointers (tables in scan_dispatch.cpp).
template <typename T>
struct Kernels {
  const char* name;
  void (*scan_y)(T* h, T* y, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, int64_t ld_bc,
                 const T* Dskip, int64_t len, int64_t nd, int64_t D, int64_t N);
  void (*scan_no_y)(T* h, T* y, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, int64_t ld_bc,
                    const T* Dskip, int64_t len, int64_t nd, int64_t D, int64_t N);
  T(*backward_channel)
  (T* g, T* dAd, T* dB_p, T* dC_p, T* hs, T* as, T* du, T* ddelta, const T* dy, const T* u, const T* delta, const T* Ad,
   const T* Bm, const T* Cm, int64_t ld_bc, T Dd, const T* h_start, int64_t len, int64_t D, int64_t N);
};

// The kernels this process uses: AVX2+FMA where the CPU has them, else the baseline build. Fixed for
// the life of the process, so results are reproducible on one machine.
template <typename T>
const Kernels<T>& kernels();
// Each table by name, for tests: baseline always, AVX2 (nullptr when the CPU lacks it).
template <typename T>
const Kernels<T>& generic_kernels();
template <typename T>
const Kernels<T>* avx2_kernels();

// selective_scan_forward with the strategy chosen explicitly (tests run both on the same inputs).
template <typename T>
void forward(ForwardMode mode, T* y, T* h_last, T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm,
             const T* Cm, int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D, int64_t N,
             int64_t chunk, const int32_t* slots = nullptr);

// The mode kAuto picks for these shapes.
ForwardMode auto_mode(int64_t B, int64_t L, int64_t D, int64_t chunk);

}  // namespace sambalm::ops::cpu::scan
