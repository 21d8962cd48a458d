// Tensor: a dense, contiguous, row-major block of elements on the CPU with a dtype and a shape.
// It either owns its bytes (Tensor::empty/zeros) or views bytes kept alive by a holder (a memory
// map, a parent tensor). Ops do not take Tensors: they take raw pointers and sizes (ops.h), so a
// Tensor is the currency of files, the CLI and tests, not of inner loops.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace sambalm {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 24, 64]"

class Tensor {
 public:
  Tensor() = default;

  // New zero-filled storage.
  static Tensor zeros(DType dtype, Shape shape);
  static Tensor empty(DType dtype, Shape shape) { return zeros(dtype, std::move(shape)); }
  // A view of `data` whose lifetime is tied to `holder`.
  static Tensor view(DType dtype, Shape shape, void* data, std::shared_ptr<void> holder);
  // Float32 tensor from values.
  static Tensor from_f32(Shape shape, const std::vector<float>& values);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T> T* data() { return static_cast<T*>(data_); }
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }

  // Copy converted to float32 (any numeric dtype).
  Tensor to_f32() const;
  // Copy converted from float32 to `dtype` (F32, F64, F16, BF16).
  Tensor to_dtype(DType dtype) const;
  // Same bytes, new shape (numel must match).
  Tensor reshape(Shape shape) const;
  // Deep copy.
  Tensor clone() const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> holder_;
};

}  // namespace sambalm
