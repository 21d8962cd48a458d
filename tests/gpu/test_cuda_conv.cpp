// The CUDA causal depthwise conv1d against the CPU op (ops::cpu::, float, on the same values) on odd
// shapes: strided input rows, K-1 rows of state or none, states picked through slots, L shorter than
// the state, K on the tiled (2..4) and the generic path, long sequences that the streaming backward
// splits into several runs. Forward output NaN-poisoned (every element must be written); the backward
// accumulates into random dx (strided; the columns past D NaN and untouched) / dw / dbias; the state
// update into a poisoned buffer and in place. fp32 within 1e-5, bf16 within 2e-2 (relative L2).
#include <gtest/gtest.h>

#include "mixer_testing.h"
#include "ops/mamba_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

struct ConvCase {
  int64_t B, L, D, K, ld_x;
  bool state;
  bool slots;
};
const ConvCase kCases[] = {
    {2, 333, 97, 4, 2 * 97 + 3, true, false},  // odd everything, state
    {2, 333, 97, 4, 97, false, false},         // no state, dense rows
    {1, 100, 256, 4, 2 * 256, true, true},     // aligned view: the 16-byte paths; state through slots
    {3, 2, 40, 4, 40, true, true},             // L < K-1: outputs read mostly state rows
    {2, 77, 40, 3, 43, true, false},           // K = 3
    {2, 50, 33, 6, 35, true, false},           // K = 6: the generic kernel
    {2, 17, 9, 1, 9, false, false},            // K = 1: no state rows at all
    {2, 19, 128, 4, 2 * 128, false, false},    // a Mamba layer's training forward (mamba_tiny: x of in_proj's xz)
    // The streaming backward's tiling: several runs per sequence (L not a multiple of them), D not a
    // multiple of a block's 256 (bf16) / 128 (fp32) channels, B = 3, 16-byte paths and scalar ones.
    {3, 1000, 264, 4, 2 * 264, true, false},      // aligned x and dx views: vector loads and stores
    {3, 1000, 264, 4, 2 * 264 + 1, true, false},  // misaligned x rows, aligned dx
    {3, 513, 300, 2, 600, false, false},          // K = 2, D % 8 == 4
    {3, 771, 97, 3, 99, true, false},             // K = 3, odd D and rows
};
constexpr int64_t kSlots = 4;
const std::vector<int32_t> kSlotIds = {3, 1, 2};

template <typename T>
double conv_tol() {
  return std::is_same_v<T, float> ? 1e-5 : 2e-2;
}

template <typename T>
void check_forward(const ConvCase& c) {
  const auto x = seen<T>(random_vector(c.B * c.L * c.ld_x, 1)), w = seen<T>(random_vector(c.D * c.K, 2, 0.7f)),
             bias = seen<T>(random_vector(c.D, 3, 0.5f));
  const int64_t state_rows = (c.slots ? kSlots : c.B) * (c.K - 1) * c.D;
  const auto state = seen<T>(random_vector(state_rows + 1, 4));  // +1: never empty
  const std::vector<int32_t> slots(kSlotIds.begin(), kSlotIds.begin() + c.B);
  std::vector<float> want(c.B * c.L * c.D);
  ops::cpu::causal_conv1d_forward<float>(want.data(), x.data(), c.ld_x, w.data(), bias.data(),
                                         c.state ? state.data() : nullptr, c.B, c.L, c.D, c.K,
                                         c.slots ? slots.data() : nullptr);
  DeviceBuffer<T> d_x(as<T>(x)), d_w(as<T>(w)), d_bias(as<T>(bias)), d_state(as<T>(state));
  DeviceBuffer<T> d_out(as<T>(nans(want.size())));
  DeviceBuffer<int32_t> d_slots(slots);
  ops::causal_conv1d_forward(gpu(), d_out.get(), d_x.get(), c.ld_x, d_w.get(), d_bias.get(),
                             c.state ? d_state.get() : nullptr, c.B, c.L, c.D, c.K, c.slots ? d_slots.get() : nullptr);
  expect_close(d_out, want, conv_tol<T>(),
               "forward B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " D" + std::to_string(c.D) + " K" +
                   std::to_string(c.K) + " state " + std::to_string(c.state) + " slots " + std::to_string(c.slots));
}

// dx rows: 2D apart (the model's view into the in_proj gradient: the 16-byte paths) where D allows,
// else D + 5 (misaligned rows: the scalar paths).
template <typename T>
void check_backward(const ConvCase& c, bool all_grads) {
  const int64_t ld_dx = c.D % 8 == 0 ? 2 * c.D : c.D + 5;
  const auto x = seen<T>(random_vector(c.B * c.L * c.ld_x, 5)), w = seen<T>(random_vector(c.D * c.K, 6, 0.7f)),
             dout = seen<T>(random_vector(c.B * c.L * c.D, 7));
  const auto state = seen<T>(random_vector(c.B * (c.K - 1) * c.D + 1, 8));
  auto dx = seen<T>(random_vector(c.B * c.L * ld_dx, 9)), dw = seen<T>(random_vector(c.D * c.K, 10)),
       dbias = seen<T>(random_vector(c.D, 11));
  // Columns D..ld_dx-1 of dx are not the op's: NaN before, and they must stay NaN.
  for (int64_t r = 0; r < c.B * c.L; ++r)
    for (int64_t d = c.D; d < ld_dx; ++d) dx[r * ld_dx + d] = NAN;
  DeviceBuffer<T> d_x(as<T>(x)), d_w(as<T>(w)), d_dout(as<T>(dout)), d_state(as<T>(state));
  DeviceBuffer<T> d_dx(as<T>(dx)), d_dw(as<T>(dw)), d_dbias(as<T>(dbias));
  const T* st = c.state ? d_state.get() : nullptr;
  ops::causal_conv1d_backward(gpu(), d_dx.get(), ld_dx, all_grads ? d_dw.get() : nullptr,
                              all_grads ? d_dbias.get() : nullptr, d_dout.get(), d_x.get(), c.ld_x, d_w.get(), st, c.B,
                              c.L, c.D, c.K);
  const std::vector<float> dw0 = dw, dbias0 = dbias;
  ops::cpu::causal_conv1d_backward<float>(dx.data(), ld_dx, dw.data(), dbias.data(), dout.data(), x.data(), c.ld_x,
                                          w.data(), c.state ? state.data() : nullptr, c.B, c.L, c.D, c.K);
  const std::string tag = " B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " D" + std::to_string(c.D) + " K" +
                          std::to_string(c.K) + " state " + std::to_string(c.state);
  const auto got_dx = to_float(d_dx.download());
  std::vector<float> got_in, want_in;
  int64_t pad_written = 0;
  for (size_t i = 0; i < dx.size(); ++i) {
    if (int64_t(i) % ld_dx < c.D) {
      got_in.push_back(got_dx[i]);
      want_in.push_back(dx[i]);
    } else {
      pad_written += !std::isnan(got_dx[i]);
    }
  }
  EXPECT_LT(rel_error(got_in, widen(want_in)), conv_tol<T>()) << "dx" << tag;
  EXPECT_EQ(pad_written, 0) << "dx columns past D written" << tag;
  expect_close(d_dw, all_grads ? dw : dw0, conv_tol<T>(), "dw" + tag);
  expect_close(d_dbias, all_grads ? dbias : dbias0, conv_tol<T>(), "dbias" + tag);
}

// The conv + SiLU forward: out as causal_conv1d_forward, act = silu(out) (of out as stored), both
// NaN-poisoned.
template <typename T>
void check_silu_forward(const ConvCase& c) {
  const auto x = seen<T>(random_vector(c.B * c.L * c.ld_x, 1)), w = seen<T>(random_vector(c.D * c.K, 2, 0.7f)),
             bias = seen<T>(random_vector(c.D, 3, 0.5f));
  const int64_t state_rows = (c.slots ? kSlots : c.B) * (c.K - 1) * c.D;
  const auto state = seen<T>(random_vector(state_rows + 1, 4));
  const std::vector<int32_t> slots(kSlotIds.begin(), kSlotIds.begin() + c.B);
  std::vector<float> want(c.B * c.L * c.D), want_act(want.size());
  ops::cpu::causal_conv1d_forward<float>(want.data(), x.data(), c.ld_x, w.data(), bias.data(),
                                         c.state ? state.data() : nullptr, c.B, c.L, c.D, c.K,
                                         c.slots ? slots.data() : nullptr);
  // The GPU activates out as stored (rounded to T).
  const auto stored = seen<T>(want);
  ops::cpu::silu_forward<float>(want_act.data(), stored.data(), int64_t(stored.size()));
  DeviceBuffer<T> d_x(as<T>(x)), d_w(as<T>(w)), d_bias(as<T>(bias)), d_state(as<T>(state));
  DeviceBuffer<T> d_out(as<T>(nans(want.size()))), d_act(as<T>(nans(want.size())));
  DeviceBuffer<int32_t> d_slots(slots);
  ops::causal_conv1d_silu_forward(gpu(), d_out.get(), d_act.get(), d_x.get(), c.ld_x, d_w.get(), d_bias.get(),
                                  c.state ? d_state.get() : nullptr, c.B, c.L, c.D, c.K,
                                  c.slots ? d_slots.get() : nullptr);
  const std::string tag = " B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " D" + std::to_string(c.D) + " K" +
                          std::to_string(c.K) + " state " + std::to_string(c.state);
  expect_close(d_out, want, conv_tol<T>(), "silu forward out" + tag);
  expect_close(d_act, want_act, conv_tol<T>(), "silu forward act" + tag);
}

// The conv + SiLU backward against the CPU op: dout = dact * silu'(pre) on the fly. G: the type of dw
// and dbias (T, or fp32 beside bf16 activations as the model's bf16 mode runs it). The GPU rounds that
// gradient to bf16 in bf16 (as the stored gradient of the unfused ops was), the CPU in float does not:
// within the bf16 tolerance.
template <typename T, typename G>
void check_silu_backward(const ConvCase& c, bool all_grads) {
  const int64_t ld_dx = c.D % 8 == 0 ? 2 * c.D : c.D + 5;
  const auto x = seen<T>(random_vector(c.B * c.L * c.ld_x, 15)), w = seen<T>(random_vector(c.D * c.K, 16, 0.7f)),
             dact = seen<T>(random_vector(c.B * c.L * c.D, 17)), pre = seen<T>(random_vector(c.B * c.L * c.D, 18, 4.f));
  const auto state = seen<T>(random_vector(c.B * (c.K - 1) * c.D + 1, 19));
  auto dx = seen<T>(random_vector(c.B * c.L * ld_dx, 20)), dw = seen<G>(random_vector(c.D * c.K, 21)),
       dbias = seen<G>(random_vector(c.D, 22));
  for (int64_t r = 0; r < c.B * c.L; ++r)
    for (int64_t d = c.D; d < ld_dx; ++d) dx[r * ld_dx + d] = NAN;
  DeviceBuffer<T> d_x(as<T>(x)), d_w(as<T>(w)), d_dact(as<T>(dact)), d_pre(as<T>(pre)), d_state(as<T>(state));
  DeviceBuffer<T> d_dx(as<T>(dx));
  DeviceBuffer<G> d_dw(as<G>(dw)), d_dbias(as<G>(dbias));
  ops::causal_conv1d_silu_backward(gpu(), d_dx.get(), ld_dx, all_grads ? d_dw.get() : nullptr,
                                   all_grads ? d_dbias.get() : nullptr, d_dact.get(), d_pre.get(), d_x.get(), c.ld_x,
                                   d_w.get(), c.state ? d_state.get() : nullptr, c.B, c.L, c.D, c.K);
  const std::vector<float> dw0 = dw, dbias0 = dbias;
  ops::cpu::causal_conv1d_silu_backward<float>(dx.data(), ld_dx, dw.data(), dbias.data(), dact.data(), pre.data(),
                                               x.data(), c.ld_x, w.data(), c.state ? state.data() : nullptr, c.B, c.L,
                                               c.D, c.K);
  const std::string tag = " silu B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " D" + std::to_string(c.D) +
                          " K" + std::to_string(c.K) + " state " + std::to_string(c.state);
  const auto got_dx = to_float(d_dx.download());
  std::vector<float> got_in, want_in;
  int64_t pad_written = 0;
  for (size_t i = 0; i < dx.size(); ++i) {
    if (int64_t(i) % ld_dx < c.D) {
      got_in.push_back(got_dx[i]);
      want_in.push_back(dx[i]);
    } else {
      pad_written += !std::isnan(got_dx[i]);
    }
  }
  EXPECT_LT(rel_error(got_in, widen(want_in)), conv_tol<T>()) << "dx" << tag;
  EXPECT_EQ(pad_written, 0) << "dx columns past D written" << tag;
  expect_close(d_dw, all_grads ? dw : dw0, conv_tol<T>(), "dw" + tag);
  expect_close(d_dbias, all_grads ? dbias : dbias0, conv_tol<T>(), "dbias" + tag);
}

template <typename T>
void check_state_update(const ConvCase& c, bool in_place) {
  const int64_t rows = (c.slots ? kSlots : c.B) * (c.K - 1) * c.D;
  const auto x = seen<T>(random_vector(c.B * c.L * c.ld_x, 12));
  const auto state = seen<T>(random_vector(rows, 13));
  const std::vector<int32_t> slots(kSlotIds.begin(), kSlotIds.begin() + c.B);
  const int32_t* sl = c.slots ? slots.data() : nullptr;
  // Rows of slots no sequence uses keep what they had: start the out-of-place buffer as a copy of state
  // there, NaN where the op must write.
  std::vector<float> want = state;
  ops::cpu::causal_conv1d_state_update<float>(want.data(), x.data(), c.ld_x, want.data(), c.B, c.L, c.D, c.K, sl);
  std::vector<float> init = state;
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t sb = c.slots ? slots[b] : b;
    for (int64_t i = 0; i < (c.K - 1) * c.D; ++i) init[sb * (c.K - 1) * c.D + i] = NAN;
  }
  DeviceBuffer<T> d_x(as<T>(x)), d_state(as<T>(state)), d_new(as<T>(in_place ? state : init));
  DeviceBuffer<int32_t> d_slots(slots);
  ops::causal_conv1d_state_update(gpu(), d_new.get(), d_x.get(), c.ld_x, in_place ? d_new.get() : d_state.get(), c.B,
                                  c.L, c.D, c.K, c.slots ? d_slots.get() : nullptr);
  // Exact: a copy.
  const auto got = to_float(d_new.download());
  ASSERT_EQ(got.size(), want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += !(got[i] == want[i]);
  EXPECT_EQ(bad, 0) << "state update L" << c.L << " K" << c.K << " slots " << c.slots << " in place " << in_place;
}

TEST(CudaConv, ForwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) check_forward<float>(c);
}
TEST(CudaConv, ForwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) check_forward<bf16>(c);
}
TEST(CudaConv, BackwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool all : {true, false}) check_backward<float>(c, all);
}
TEST(CudaConv, BackwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool all : {true, false}) check_backward<bf16>(c, all);
}
TEST(CudaConv, SiluForward) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) {
    check_silu_forward<float>(c);
    check_silu_forward<bf16>(c);
  }
}
TEST(CudaConv, SiluBackwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool all : {true, false}) check_silu_backward<float, float>(c, all);
}
TEST(CudaConv, SiluBackwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool all : {true, false}) {
      check_silu_backward<bf16, bf16>(c, all);
      check_silu_backward<bf16, float>(c, all);  // the model's bf16 mode: fp32 parameter gradients
    }
}
TEST(CudaConv, StateUpdate) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool in_place : {false, true}) {
      check_state_update<float>(c, in_place);
      check_state_update<bf16>(c, in_place);
    }
}

}  // namespace
}  // namespace sambalm
