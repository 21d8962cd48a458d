#include <cstring>

#include "core/error.h"
#include "ops/memory_ops.h"
#if SAMBALM_HAVE_CUDA
#include "ops/cuda/runtime.h"
#endif

namespace sambalm::ops {

#if !SAMBALM_HAVE_CUDA
namespace {
[[noreturn]] void no_cuda(const Context& ctx, const char* what) {
  fail("{} on {}: this sambalm was built without the CUDA backend", what, ctx.name());
}
}  // namespace
#endif

Arena arena_on(const Context& ctx, size_t bytes) {
  if (ctx.device == Device::CPU) return Arena(bytes);
#if SAMBALM_HAVE_CUDA
  return cuda::device_arena(ctx, bytes);
#else
  no_cuda(ctx, "arena");
#endif
}

void upload(const Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (ctx.device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if SAMBALM_HAVE_CUDA
  cuda::copy_to_device(ctx, dst, src, bytes);
#else
  no_cuda(ctx, "upload");
#endif
}

void download(const Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (ctx.device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if SAMBALM_HAVE_CUDA
  cuda::copy_to_host(ctx, dst, src, bytes);
#else
  no_cuda(ctx, "download");
#endif
}

void zero_bytes(const Context& ctx, void* dst, size_t bytes) {
  if (bytes == 0) return;
  if (ctx.device == Device::CPU) {
    std::memset(dst, 0, bytes);
    return;
  }
#if SAMBALM_HAVE_CUDA
  cuda::memset_zero(ctx, dst, bytes);
#else
  no_cuda(ctx, "zero fill");
#endif
}

void synchronize(const Context& ctx) {
  if (ctx.device == Device::CPU) return;
#if SAMBALM_HAVE_CUDA
  cuda::synchronize(ctx);
#endif
}

}  // namespace sambalm::ops
