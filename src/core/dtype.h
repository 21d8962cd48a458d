// Element types that tensors and files can hold. Compute is float32 (float64 for gradient checks);
// the other types appear in checkpoints, token data and on the GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sambalm {

enum class DType : uint8_t { F32, F64, F16, BF16, I64, I32, I16, I8, U8, U16, U32, BOOL };

size_t dtype_size(DType t);
// Safetensors spelling: "F32", "BF16", "I64", ...
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

// Half-precision conversions (round to nearest even on the way down).
float bf16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float v);

// Converts n elements of src (any floating or integer dtype) to float32.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);
// Converts n float32 values to dst_type (F32, F64, F16, BF16).
void convert_from_f32(const float* src, DType dst_type, void* dst, size_t n);

}  // namespace sambalm
