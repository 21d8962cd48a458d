// Random models initialised straight into a packed format (init_params_packed, and load_model with
// --weights-dtype for a config or preset): the same matrices, float parameters and logits as the
// float32 model packed afterwards, and at no moment a float32 copy of all the matrices. The peak is
// measured by counting the bytes live through operator new in this test program.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "io/model_dir.h"
#include "model/init.h"
#include "model/model.h"
#include "model/packed_weights.h"
#include "testing.h"

using namespace sambalm;

namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};

// Each block carries its size in a header so that delete can count it off.
constexpr size_t kHeader = 16;

void* counted_alloc(size_t n) {
  void* raw = std::malloc(n + kHeader);
  if (!raw) throw std::bad_alloc();
  std::memcpy(raw, &n, sizeof n);
  const int64_t live = g_live.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
  int64_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return static_cast<char*>(raw) + kHeader;
}

void counted_free(void* p) {
  if (!p) return;
  char* raw = static_cast<char*>(p) - kHeader;
  size_t n;
  std::memcpy(&n, raw, sizeof n);
  g_live.fetch_sub(static_cast<int64_t>(n));
  std::free(raw);
}

}  // namespace

void* operator new(size_t n) { return counted_alloc(n); }
void* operator new[](size_t n) { return counted_alloc(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }

namespace {

std::string sambay_config() { return test::fixtures_dir() + "/sambay_tiny/config.json"; }

// Float32 bytes of the matrices that `format` packs.
int64_t packable_f32_bytes(const ModelConfig& cfg, MatrixFormat format) {
  int64_t n = 0;
  for (const auto& s : param_specs(cfg))
    if (packs_into(s.name, s.shape, format)) n += 4 * shape_numel(s.shape);
  return n;
}

std::vector<float> logits_of(const ModelConfig& cfg, const ParamStore& p) {
  const int64_t B = 1, T = 12;
  std::vector<int32_t> tokens(T);
  for (int64_t t = 0; t < T; ++t) tokens[t] = static_cast<int32_t>((7 * t + 3) % cfg.vocab_size);
  Model<float> model(cfg, p.entries());
  model.forward(p.data(), tokens.data(), nullptr, B, T);
  return std::vector<float>(model.logits(), model.logits() + B * T * cfg.padded_vocab_size);
}

}  // namespace

TEST(InitPacked, LoadingARandomModelInBf16NeverHoldsTheFloat32Matrices) {
  REQUIRE_FIXTURES();
  const ModelConfig cfg = resolve_config(sambay_config());
  const int64_t f32 = packable_f32_bytes(cfg, MatrixFormat::BF16);
  const int64_t base = g_live.load();
  g_peak.store(base);
  LoadedModel lm = load_model(sambay_config(), "", {.keep_packed = true, .weights_dtype = "bf16"});
  const int64_t peak = g_peak.load() - base;
  ASSERT_TRUE(lm.params.packed());
  // Packed afterwards, the float32 matrices (f32) and their bf16 copy (f32 / 2) are live at once;
  // packed as drawn, the bf16 matrices plus one float32 matrix at a time and the small float parameters.
  EXPECT_LT(peak, f32) << "float32 bytes of the matrices: " << f32;
  EXPECT_GT(peak, f32 / 2);  // the bf16 matrices themselves are counted (the counter works)
  // No float32 copy of a packed matrix in the store either.
  for (const auto& e : lm.params.entries()) {
    if (packs_into(e.name, e.shape, MatrixFormat::BF16)) {
      EXPECT_TRUE(e.packed) << e.name;
    }
  }
}

TEST(InitPacked, SameMatricesAndLogitsAsTheFloat32ModelPackedAfterwards) {
  REQUIRE_FIXTURES();
  const ModelConfig cfg = resolve_config(sambay_config());
  ParamStore f32(param_specs(cfg));
  init_params(cfg, f32, 0);
  for (MatrixFormat f : {MatrixFormat::BF16, MatrixFormat::F16, MatrixFormat::Q8}) {
    const ParamStore after = pack_params(f32, f);
    const ParamStore drawn = init_params_packed(cfg, 0, f);
    ASSERT_EQ(after.size(), drawn.size());
    EXPECT_EQ(0, std::memcmp(after.data(), drawn.data(), after.size() * sizeof(float)));
    for (const auto& e : after.entries()) {
      const ParamEntry& d = drawn.entry(e.name);
      ASSERT_EQ(bool(e.packed), bool(d.packed)) << e.name;
      if (!e.packed) continue;
      ASSERT_EQ(e.packed->bytes(), d.packed->bytes()) << e.name;
      EXPECT_EQ(0, std::memcmp(e.packed->data, d.packed->data,
                               static_cast<size_t>(e.numel() * (f == MatrixFormat::Q8 ? 1 : 2))))
          << e.name;
      if (f == MatrixFormat::Q8) {
        EXPECT_EQ(0, std::memcmp(e.packed->scales, d.packed->scales,
                                 static_cast<size_t>(e.packed->rows * e.packed->blocks_per_row()) * sizeof(float)))
            << e.name;
      }
    }
    EXPECT_EQ(logits_of(cfg, after), logits_of(cfg, drawn)) << matrix_format_name(f);
  }
  // Through the loader too: a config with --weights-dtype bf16 gives the model packed afterwards.
  LoadedModel lm = load_model(sambay_config(), "", {.keep_packed = true, .weights_dtype = "bf16"});
  EXPECT_EQ(logits_of(cfg, pack_params(f32, MatrixFormat::BF16)), logits_of(cfg, lm.params));
}
