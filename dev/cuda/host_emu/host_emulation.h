// Host emulation of the CUDA features the dev/cuda files use, to run their checks on a machine
// without a GPU (see check_on_cpu.sh): blocks run one after another, the threads of a block as
// coroutines that switch at __syncthreads (in a shuffled order), device memory is host memory.
// Warp shuffles (xor, down) are exchanges between warp-wide waits: every live thread of the warp must
// take part, as in warp_sum. Atomics are plain read-modify-writes (the block's threads never run at the
// same time). A file that defines the kernels of a second translation unit defines EMU_SECONDARY_TU
// first, so the runtime stubs exist once.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <ucontext.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)
// Static shared arrays: one per kernel function, which every thread of the (one running) block sees.
#undef __shared__
#define __shared__ static

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline uint4 __ldg(const uint4* p) { return *p; }
inline void __stcs(uint4* p, uint4 v) { *p = v; }
inline uint2 __ldg(const uint2* p) { return *p; }
inline void __stcs(uint2* p, uint2 v) { *p = v; }
inline float __expf(float x) { return expf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }

namespace emu {
// cp.async: copies wait in their thread's groups and land only when cp_wait must complete them (the
// latest legal moment), so a read of a slot before its wait sees stale data.
struct Copy { void* dst; const void* src; size_t n; };
struct Thread {
  ucontext_t ctx;
  bool done = false, at_barrier = false;
  int wait = 0;  // what it waits at: 0 nothing (runs), 1 __syncthreads, 2 a warp exchange (shuffle)
  uint3 tid;
  std::vector<std::vector<Copy>> groups{1};  // committed groups, then the open one (last)
};
inline ucontext_t sched;
inline std::vector<Thread> threads;
inline int cur = 0;
inline std::function<void()> body;
inline std::vector<std::vector<char>> stacks;
inline std::vector<unsigned char> dyn_smem;
inline std::mt19937 rng(12345);
inline long launches = 0, barriers = 0;
inline std::vector<double> shfl_slots;
inline void trampoline() {
  body();
  threads[cur].done = true;
  swapcontext(&threads[cur].ctx, &sched);
}
inline void syncthreads() {
  ++barriers;
  threads[cur].at_barrier = true;
  threads[cur].wait = 1;
  swapcontext(&threads[cur].ctx, &sched);
}
// Waits until every live thread of this thread's warp waits here too (warps: 32 consecutive threads).
inline void warp_wait() {
  threads[cur].wait = 2;
  swapcontext(&threads[cur].ctx, &sched);
}
inline void cp_async(void* dst, const void* src, size_t n) { threads[cur].groups.back().push_back({dst, src, n}); }
inline void cp_commit() { threads[cur].groups.emplace_back(); }
inline void cp_wait(size_t pending) {
  auto& g = threads[cur].groups;
  while (g.size() - 1 > pending) {
    for (const Copy& c : g.front()) std::memcpy(c.dst, c.src, c.n);
    g.erase(g.begin());
  }
}
template <class F>
void launch(F f, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = nullptr) {
  ++launches;
  body = f;
  gridDim = grid;
  blockDim = block;
  const int n = block.x * block.y * block.z;
  constexpr size_t kStack = 512 * 1024;
  if ((int)stacks.size() < n) stacks.resize(n, std::vector<char>(kStack));
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = make_uint3(bx, by, bz);
        // Dynamic shared memory starts as garbage (EMU_SMEM_FILL=255: NaN floats, to catch reads of
        // slots nobody wrote).
        static const int fill = std::getenv("EMU_SMEM_FILL") ? std::atoi(std::getenv("EMU_SMEM_FILL")) : 0xA5;
        dyn_smem.assign(std::max<size_t>(smem, 16), static_cast<unsigned char>(fill));
        threads.assign(n, Thread{});
        for (int i = 0; i < n; ++i) {
          Thread& t = threads[i];
          t.tid = make_uint3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
          getcontext(&t.ctx);
          t.ctx.uc_stack.ss_sp = stacks[i].data();
          t.ctx.uc_stack.ss_size = kStack;
          t.ctx.uc_link = nullptr;
          makecontext(&t.ctx, trampoline, 0);
        }
        // Run every thread that may run until it waits or ends; then release a warp whose live threads
        // all wait at a warp exchange, else (all live threads at __syncthreads) the whole block.
        for (;;) {
          std::shuffle(order.begin(), order.end(), rng);
          for (int i : order) {
            Thread& t = threads[i];
            if (t.done || t.wait != 0) continue;
            cur = i;
            threadIdx = t.tid;
            t.at_barrier = false;
            swapcontext(&sched, &t.ctx);
            if (!threads[i].done && threads[i].wait == 0) {
              std::fprintf(stderr, "emu: thread suspended outside a barrier\n");
              std::abort();
            }
          }
          int alive = 0, at_block = 0;
          for (auto& t : threads) alive += !t.done, at_block += !t.done && t.wait == 1;
          if (!alive) break;
          bool released = false;
          for (int w = 0; w * 32 < n; ++w) {
            int live = 0, exchanging = 0;
            for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i)
              live += !threads[i].done, exchanging += !threads[i].done && threads[i].wait == 2;
            if (live && exchanging == live) {
              for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i) threads[i].wait = 0;
              released = true;
            }
          }
          if (released) continue;
          if (at_block != alive) {
            std::fprintf(stderr, "emu: a warp's threads wait at different barriers (kernel %ld)\n", launches);
            std::abort();
          }
          for (auto& t : threads) t.wait = 0;
          int done = 0;
          for (auto& t : threads) done += t.done;
          if (done) { std::fprintf(stderr, "emu: barrier with %d exited threads (kernel %ld)\n", done, launches); }
        }
      }
}
// Warp shuffles: each thread puts its value in its slot, the warp waits for all its threads, each
// reads the slot of its source lane (its own where the source is outside the warp or the block, as
// CUDA's shuffles do), and the warp waits again before any slot is reused.
template <class V>
V shfl_from(V v, int src_lane) {
  static_assert(sizeof(V) <= sizeof(double));
  if (shfl_slots.size() < threads.size()) shfl_slots.resize(threads.size());
  const int me = cur;
  std::memcpy(&shfl_slots[me], &v, sizeof(V));
  warp_wait();
  const int src = (me & ~31) | (src_lane & 31);
  V r;
  std::memcpy(&r, &shfl_slots[src_lane >= 0 && src_lane < 32 && src < (int)threads.size() ? src : me], sizeof(V));
  warp_wait();
  return r;
}
}  // namespace emu
#define __syncthreads() emu::syncthreads()
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int = 32) { return emu::shfl_from(v, (emu::cur & 31) ^ mask); }
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int = 32) { return emu::shfl_from(v, int((emu::cur & 31) + delta)); }
// Atomics: threads switch only at barriers, so a read-modify-write is atomic here.
inline float atomicAdd(float* p, float v) { const float old = *p; *p = old + v; return old; }
inline double atomicAdd(double* p, double v) { const double old = *p; *p = old + v; return old; }

#ifndef EMU_SECONDARY_TU
extern "C" {
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { std::memset(d, v, n); return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t n) { *p = std::malloc(n); return cudaSuccess; }
cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, enum cudaMemcpyKind) { std::memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemset(void* d, int v, size_t n) { std::memset(d, v, n); return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "emu error"; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof(*p));
  std::strcpy(p->name, "host emulation");
  p->multiProcessorCount = 132, p->major = 9, p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, enum cudaDeviceAttr, int) {
  const char* e = std::getenv("EMU_SMS");
  *v = e ? std::atoi(e) : 132;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, enum cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* n, const void*, int, size_t, unsigned) {
  const char* e = std::getenv("EMU_OCC");
  *n = e ? std::atoi(e) : 3;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = nullptr; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 1.f; return cudaSuccess; }
}
#endif
template <class T>
cudaError_t cudaFuncSetAttribute(T*, enum cudaFuncAttribute, int) { return cudaSuccess; }
