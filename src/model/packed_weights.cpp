#include "model/packed_weights.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace sambalm {

void PackedWeights::add(const std::string& name, OwnedPackedMatrix m) {
  owned_.push_back(std::make_unique<OwnedPackedMatrix>(std::move(m)));
  mats_[name] = owned_.back()->view;
}

void PackedWeights::add_view(const std::string& name, const PackedMatrix& m, const Tensor& keep) {
  kept_.push_back(keep);
  mats_[name] = m;
}

const PackedMatrix* PackedWeights::find(const std::string& name) const {
  auto it = mats_.find(name);
  return it == mats_.end() ? nullptr : &it->second;
}

bool is_packable(const std::string& name, const Shape& shape) {
  auto ends_with = [&](const char* s) {
    const size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  return shape.size() == 2 && ends_with(".weight") && !ends_with("conv.weight");
}

bool packs_into(const std::string& name, const Shape& shape, MatrixFormat format) {
  if (format == MatrixFormat::F32 || !is_packable(name, shape)) return false;
  return !is_block_format(format) || shape[1] % kQ8Block == 0;
}

MatrixFormat parse_matrix_format(const std::string& name) {
  std::string l = name;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "f32" || l == "fp32" || l == "float32") return MatrixFormat::F32;
  if (l == "bf16" || l == "bfloat16") return MatrixFormat::BF16;
  if (l == "f16" || l == "fp16" || l == "float16") return MatrixFormat::F16;
  if (l == "q8" || l == "q8_0") return MatrixFormat::Q8;
  if (l == "q4" || l == "q4_0") return MatrixFormat::Q4;
  fail("weight format '{}': expected f32, bf16, f16, q8 or q4", name);
}

namespace {

std::vector<ParamSpec> specs_of(const ParamStore& p) {
  std::vector<ParamSpec> specs;
  for (const auto& e : p.entries()) specs.push_back({e.name, e.shape});
  return specs;
}

}  // namespace

ParamStore pack_params(const ParamStore& params, MatrixFormat format) {
  auto packed = std::make_shared<PackedWeights>();
  std::vector<float> tmp;
  for (const auto& e : params.entries()) {
    if (!packs_into(e.name, e.shape, format)) continue;
    const float* w = nullptr;
    if (e.packed) {  // re-packing: through float32
      tmp.resize(static_cast<size_t>(e.numel()));
      for (int64_t n = 0; n < e.shape[0]; ++n)
        for (int64_t k = 0; k < e.shape[1]; ++k) tmp[n * e.shape[1] + k] = packed_value(*e.packed, n, k);
      w = tmp.data();
    } else {
      w = params.data() + e.offset;
    }
    packed->add(e.name, pack_matrix(w, e.shape[0], e.shape[1], format));
  }
  ParamStore out(specs_of(params), packed->matrices().empty() ? nullptr : std::move(packed));
  for (const auto& e : out.entries()) {
    if (e.packed) continue;
    const ParamEntry& src = params.entry(e.name);
    float* dst = out.data() + e.offset;
    if (src.packed)
      for (int64_t i = 0; i < e.numel(); ++i) dst[i] = packed_value(*src.packed, i / e.shape[1], i % e.shape[1]);
    else
      std::memcpy(dst, params.data() + src.offset, static_cast<size_t>(e.numel()) * sizeof(float));
  }
  return out;
}

ParamStore unpack_params(const ParamStore& params) { return pack_params(params, MatrixFormat::F32); }

namespace {

bool half_finite(uint16_t bits, bool bf16) { return bf16 ? (bits & 0x7f80u) != 0x7f80u : (bits & 0x7c00u) != 0x7c00u; }

}  // namespace

std::shared_ptr<PackedWeights> take_packed(std::map<std::string, Tensor>& sd, const std::string& source) {
  auto packed = std::make_shared<PackedWeights>();
  std::vector<std::string> taken;
  for (const auto& [name, t] : sd) {
    const bool is_scales = name.size() > 7 && name.compare(name.size() - 7, 7, ".scales") == 0;
    if (is_scales) {
      const std::string w = name.substr(0, name.size() - 7);
      auto it = sd.find(w);
      SAMBALM_CHECK(it != sd.end() && (it->second.dtype() == DType::I8 || it->second.dtype() == DType::U8),
                    "{}: tensor '{}' holds block scales, but '{}' is {} (scales belong to int8 q8 and uint8 q4 weights "
                    "only)",
                    source, name, w, it == sd.end() ? "absent" : dtype_name(it->second.dtype()));
      continue;
    }
    const DType dt = t.dtype();
    if (dt != DType::BF16 && dt != DType::F16 && dt != DType::I8 && dt != DType::U8) continue;
    if (!is_packable(name, t.shape())) {
      SAMBALM_CHECK(dt != DType::I8 && dt != DType::U8,
                    "{}: tensor '{}' {} is {}, but only the 2-D GEMM weights may be q8 or q4 (norms, A_log, D, biases "
                    "and conv weights are float)",
                    source, name, shape_str(t.shape()), dtype_name(dt));
      continue;  // a bf16/f16 norm or bias: converted to float32 by load_params
    }
    // q4 stores two weights per byte: a uint8 [rows, cols / 2].
    const bool q4 = dt == DType::U8;
    const int64_t rows = t.dim(0), cols = q4 ? 2 * t.dim(1) : t.dim(1), n = rows * cols;
    const char* fmt_name = q4 ? "q4" : "q8";
    const MatrixFormat block_format = q4 ? MatrixFormat::Q4 : MatrixFormat::Q8;
    PackedMatrix m{MatrixFormat::BF16, rows, cols, t.raw(), nullptr};
    if (dt == DType::BF16 || dt == DType::F16) {
      m.format = dt == DType::BF16 ? MatrixFormat::BF16 : MatrixFormat::F16;
      const auto* bits = static_cast<const uint16_t*>(t.raw());
      for (int64_t i = 0; i < n; ++i)
        SAMBALM_CHECK(half_finite(bits[i], dt == DType::BF16),
                      "{}: weight '{}' holds a non-finite value at flat index {}; the model cannot produce meaningful "
                      "output",
                      source, name, i);
      packed->add_view(name, m, t);
    } else {
      m.format = block_format;
      const std::string sn = scales_name(name);
      auto it = sd.find(sn);
      SAMBALM_CHECK(it != sd.end(), "{}: weight '{}' is {} ({}) but its block scales '{}' are missing", source, name,
                    dtype_name(dt), fmt_name, sn);
      const Tensor& s = it->second;
      SAMBALM_CHECK(s.dtype() == DType::F16 || s.dtype() == DType::F32,
                    "{}: block scales '{}' have dtype {}, expected F16 or F32", source, sn, dtype_name(s.dtype()));
      SAMBALM_CHECK(s.ndim() == 2 && s.dim(0) == rows && s.dim(1) > 0,
                    "{}: block scales '{}' have shape {}, expected [{}, {}] (one per {} weights of each row of {})",
                    source, sn, shape_str(s.shape()), rows, cols / kQ8Block, kQ8Block, shape_str(t.shape()));
      SAMBALM_CHECK(cols % s.dim(1) == 0 && cols / s.dim(1) == kQ8Block,
                    "{}: weight '{}' {} with scales {}: blocks of {} weights; {} allows blocks of {} only", source,
                    name, shape_str(t.shape()), shape_str(s.shape()),
                    cols % s.dim(1) == 0 ? fmt::format("{}", cols / s.dim(1)) : fmt::format("{}/{}", cols, s.dim(1)),
                    fmt_name, kQ8Block);
      OwnedPackedMatrix own;
      own.scales.resize(static_cast<size_t>(s.numel()));
      convert_to_f32(s.dtype(), s.raw(), own.scales.data(), own.scales.size());
      for (size_t i = 0; i < own.scales.size(); ++i)
        SAMBALM_CHECK(std::isfinite(own.scales[i]), "{}: block scales '{}' hold a non-finite value at flat index {}",
                      source, sn, i);
      // The int8 values (q4's nibble pairs) stay in the mapped file; only the scales are converted (to float32).
      own.view = {block_format, rows, cols, t.raw(), own.scales.data()};
      packed->add(name, std::move(own));
      packed->add_view(name, *packed->find(name), t);  // keeps the mapping alive
      taken.push_back(sn);
    }
    taken.push_back(name);
  }
  for (const auto& name : taken) sd.erase(name);
  return packed->matrices().empty() ? nullptr : packed;
}

}  // namespace sambalm
