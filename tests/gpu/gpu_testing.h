// What the GPU tests share: a backend on cuda:0 opened once, device buffers that copy to and from
// host vectors, and the skip when no GPU is visible (CI builds these tests without a GPU).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "ops/cuda/runtime.h"
#include "ops/device.h"

namespace sambalm::testing_gpu {

#define SAMBALM_REQUIRE_GPU() \
  if (!::sambalm::cuda_available()) GTEST_SKIP() << "no CUDA GPU visible"

inline const Context& gpu() {
  static Backend backend(DeviceSpec{Device::CUDA, 0});
  return backend.context();
}

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n), p_(static_cast<T*>(ops::cuda::device_alloc(n * sizeof(T) + 16, 0))) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { ops::cuda::device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return p_; }
  const T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) { ops::cuda::copy_to_device(gpu(), p_, host.data(), host.size() * sizeof(T)); }
  std::vector<T> download() const {
    ops::cuda::synchronize(gpu());
    std::vector<T> host(n_);
    ops::cuda::copy_to_host(gpu(), host.data(), p_, n_ * sizeof(T));
    return host;
  }

 private:
  size_t n_;
  T* p_;
};

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16(v[i]);
  return out;
}
inline std::vector<float> to_f32(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}
// Rounds every value to bf16 and back: the inputs a bf16 kernel really sees.
inline std::vector<float> round_bf16(const std::vector<float>& v) { return to_f32(to_bf16(v)); }

// ||got - want|| / ||want|| (want all zero: ||got||).
inline double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    if (!std::isfinite(got[i])) return INFINITY;
    num += d * d;
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace sambalm::testing_gpu
