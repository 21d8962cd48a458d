#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace sambalm {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  for (int64_t d : shape) SAMBALM_CHECK(d >= 0, "tensor shape {} has a negative dimension", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  size_t bytes = t.nbytes();
  // 64-byte aligned so that vector loads and BLAS see aligned rows.
  size_t alloc = (bytes + 63) / 64 * 64;
  void* p = alloc ? std::aligned_alloc(64, alloc) : nullptr;
  if (alloc && !p) fail("out of memory allocating {} bytes for a tensor {}", bytes, shape_str(t.shape_));
  if (p) std::memset(p, 0, alloc);
  t.holder_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, void* data, std::shared_ptr<void> holder) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.holder_ = std::move(holder);
  return t;
}

Tensor Tensor::from_f32(Shape shape, const std::vector<float>& values) {
  Tensor t = zeros(DType::F32, std::move(shape));
  SAMBALM_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_f32: {} values for shape {}",
                values.size(), shape_str(t.shape()));
  if (!values.empty()) std::memcpy(t.data_, values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::to_f32() const {
  Tensor t = zeros(DType::F32, shape_);
  convert_to_f32(dtype_, data_, t.data<float>(), static_cast<size_t>(numel()));
  return t;
}

Tensor Tensor::to_dtype(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor f = dtype_ == DType::F32 ? *this : to_f32();
  Tensor t = zeros(dtype, shape_);
  convert_from_f32(f.data<float>(), dtype, t.data_, static_cast<size_t>(numel()));
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  SAMBALM_CHECK(shape_numel(shape) == numel(), "cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = zeros(dtype_, shape_);
  if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  return t;
}

}  // namespace sambalm
