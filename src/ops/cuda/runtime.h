// The CUDA runtime as the rest of the engine sees it: which GPUs there are, device memory, copies and
// the backend object that owns a stream and a cuBLASLt handle and hands out the Context every op call
// takes. Host code includes this header without CUDA's; src/ops/cuda/runtime.cu implements it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/arena.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

// GPUs visible to this process; 0 when there is no driver or no device (never throws).
int device_count();
// Why device_count() is 0 ("no CUDA driver", "no CUDA-capable device", ...); empty when it is not.
std::string no_device_reason();
std::string device_name(int index);
struct MemoryInfo {
  size_t free_bytes = 0, total_bytes = 0;
};
MemoryInfo memory_info(int index);

// Device memory. device_alloc throws sambalm::Error naming the size and the free memory when the
// GPU cannot hold it; device_free(nullptr) is a no-op.
void* device_alloc(size_t bytes, int index);
void device_free(void* p);
// A planned arena in device memory (core/arena.h) on the context's GPU, zero-filled on the
// context's stream; it is zero when this returns.
Arena device_arena(const Context& ctx, size_t bytes);

// Copies on the context's stream; they return once the copy is done.
void copy_to_device(const Context& ctx, void* dst, const void* src, size_t bytes);
void copy_to_host(const Context& ctx, void* dst, const void* src, size_t bytes);
void copy_on_device(const Context& ctx, void* dst, const void* src, size_t bytes);
void memset_zero(const Context& ctx, void* dst, size_t bytes);
// Waits for everything queued on the context's stream; throws with the kernel's error if one failed.
void synchronize(const Context& ctx);

// Owns a stream, a cuBLASLt handle and its workspace on one GPU.
class CudaBackend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend();
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;
  const Context& context() const { return ctx_; }

 private:
  Context ctx_;
};

}  // namespace sambalm::ops::cuda
