// Memory on the context's device: planned arenas, zero fills, and the copies between host and device
// (on the CPU the "device" is the host and the copies are memcpy). The model and the trainer use these
// instead of std::fill / std::copy on buffers that may live on a GPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/arena.h"
#include "core/context.h"

namespace sambalm::ops {

// A zero-filled arena of `bytes` in the context's memory (host memory, or the GPU's).
Arena arena_on(const Context& ctx, size_t bytes);
// Host -> device and device -> host; both return when the copy is done (the download waits for the
// work queued before it). On the CPU: memcpy.
void upload(const Context& ctx, void* dst, const void* src, size_t bytes);
void download(const Context& ctx, void* dst, const void* src, size_t bytes);
// Sets `bytes` bytes to zero (queued on the context's stream on a GPU).
void zero_bytes(const Context& ctx, void* dst, size_t bytes);
// Waits for the work queued on the context (no-op on the CPU).
void synchronize(const Context& ctx);

// x[0..n) = 0 for float, double and bf16 (whose zero is all-zero bits).
template <typename T>
inline void fill_zero(const Context& ctx, T* x, int64_t n) {
  zero_bytes(ctx, x, static_cast<size_t>(n) * sizeof(T));
}

// A copy of a host array in the context's memory: on the CPU the host array itself (no copy), on a
// GPU a device allocation uploaded once. get() is what ops take; pull() copies it back to the host.
template <typename T>
class Mirror {
 public:
  Mirror(const Context& ctx, T* host, int64_t n) : ctx_(ctx), host_(host), n_(n) {
    if (ctx.device == Device::CPU) return;
    // What take() hands out is rounded up to the arena's alignment.
    const size_t bytes = (sizeof(T) * static_cast<size_t>(n) + Arena::kAlign - 1) / Arena::kAlign * Arena::kAlign;
    arena_ = arena_on(ctx, bytes);
    device_ = arena_.template take<T>(n);
    upload(ctx, device_, host, sizeof(T) * static_cast<size_t>(n));
  }
  T* get() const { return ctx_.device == Device::CPU ? host_ : device_; }
  int64_t size() const { return n_; }
  const Context& context() const { return ctx_; }
  // Host <- device (no-op on the CPU, where they are one array).
  void pull() const {
    if (ctx_.device != Device::CPU) download(ctx_, host_, device_, sizeof(T) * static_cast<size_t>(n_));
  }
  // Device <- host (after the host copy changed).
  void push() const {
    if (ctx_.device != Device::CPU) upload(ctx_, device_, host_, sizeof(T) * static_cast<size_t>(n_));
  }

 private:
  Context ctx_;
  T* host_;
  int64_t n_;
  Arena arena_;
  T* device_ = nullptr;
};

}  // namespace sambalm::ops
