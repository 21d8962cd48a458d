// The ops of the prefill / decode path on the GPU:
//   - SambaY's small ops (kv_cache_write_rows, take_last_rows, last_positions) against the CPU op, exact
//     (they copy): odd widths, strided rows, positions that wrap the ring, more new tokens than the ring
//     holds, slot ids out of order; entries no sequence writes keep their (random) values, outputs
//     start NaN;
//   - the state carried across calls: a conv, a scan and an attention run over two chunks (the state or
//     the ring between them, through slots) equal the one-call run over the concatenation, and the
//     one-step scan repeated equals the scan (fp32 1e-5, bf16 2e-2 relative L2).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "gpu_testing.h"
#include "mixer_testing.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

template <typename T>
double tol() {
  return std::is_same_v<T, float> ? 1e-5 : 2e-2;
}

template <typename T>
void expect_equal(const DeviceBuffer<T>& got, const std::vector<float>& want, const std::string& what) {
  const auto g = to_float(got.download());
  ASSERT_EQ(g.size(), want.size()) << what;
  int64_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (!(g[i] == want[i])) ++bad;  // NaN never equals
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " differ";
}

// ---- SambaY's ops -------------------------------------------------------------------------------

template <typename T>
void check_kv_cache_write_rows(int64_t L) {
  const int64_t B = 3, S = 4, G = 3, hd = 5, cap = 7, ldkv = 2 * G * hd + 3;
  const std::vector<int32_t> slots = {2, 0, 3};
  const std::vector<int64_t> pos = {0, 5, 13};  // 5 + L and 13 wrap the ring of 7
  const auto k_new = seen<T>(random_vector(B * L * ldkv, 11)), v_new = seen<T>(random_vector(B * L * ldkv, 12));
  auto k_cache = seen<T>(random_vector(S * G * cap * hd, 13)), v_cache = seen<T>(random_vector(S * G * cap * hd, 14));
  DeviceBuffer<T> d_kn(as<T>(k_new)), d_vn(as<T>(v_new)), d_kc(as<T>(k_cache)), d_vc(as<T>(v_cache));
  ops::cpu::kv_cache_write_rows<float>(k_cache.data(), v_cache.data(), k_new.data(), v_new.data(), ldkv, slots.data(),
                                       pos.data(), B, L, G, hd, cap);
  DeviceBuffer<int32_t> d_slots(slots);
  DeviceBuffer<int64_t> d_pos(pos);
  ops::kv_cache_write_rows(gpu(), d_kc.get(), d_vc.get(), d_kn.get(), d_vn.get(), ldkv, d_slots.get(), d_pos.get(), B,
                           L, G, hd, cap);
  expect_equal(d_kc, k_cache, "kv_cache_write_rows keys L " + std::to_string(L));
  expect_equal(d_vc, v_cache, "kv_cache_write_rows values L " + std::to_string(L));
}

template <typename T>
void check_take_last_rows(int64_t B, int64_t L) {
  const int64_t width = 37;
  auto x = seen<T>(random_vector(B * L * width, 21));
  DeviceBuffer<T> d_x(as<T>(x));
  ops::cpu::take_last_rows<float>(x.data(), width, B, L);
  ops::take_last_rows(gpu(), d_x.get(), width, B, L);
  expect_equal(d_x, x, "take_last_rows B " + std::to_string(B) + " L " + std::to_string(L));
}

TEST(CudaDecodeOps, KvCacheWriteRows) {
  SAMBALM_REQUIRE_GPU();
  for (int64_t L : {1, 4, 11}) {  // 11 > cap: only the last 7 survive
    check_kv_cache_write_rows<float>(L);
    check_kv_cache_write_rows<bf16>(L);
  }
}

TEST(CudaDecodeOps, TakeLastRows) {
  SAMBALM_REQUIRE_GPU();
  for (int64_t B : {1, 3, 5})
    for (int64_t L : {1, 2, 4}) {  // L = 2, B = 3: row 1 is both a source (b = 0) and a destination (b = 1)
      check_take_last_rows<float>(B, L);
      check_take_last_rows<bf16>(B, L);
    }
}

TEST(CudaDecodeOps, LastPositions) {
  SAMBALM_REQUIRE_GPU();
  const int64_t B = 5, L = 3;
  const std::vector<int64_t> pos = {0, 7, 1, 100, 4096};
  std::vector<int64_t> want(B, -1);
  ops::cpu::last_positions(want.data(), pos.data(), B, L);
  DeviceBuffer<int64_t> d_pos(pos), d_last(std::vector<int64_t>(B, -1));
  ops::last_positions(gpu(), d_last.get(), d_pos.get(), B, L);
  EXPECT_EQ(d_last.download(), want);
}

// ---- State carried across calls ------------------------------------------------------------------

// Conv over L1 then L2 tokens (state updated in place between them, in slot 1 of 3) = one call over
// L1 + L2 from the same initial state; and the final state = the one-call update.
template <typename T>
void check_conv_carried(int64_t L1, int64_t L2) {
  const int64_t D = 19, K = 4, ld = 2 * D + 1, L = L1 + L2, S = 3;
  const std::vector<int32_t> slot = {1};
  const auto x = seen<T>(random_vector(L * ld, 31)), w = seen<T>(random_vector(D * K, 32)),
             bias = seen<T>(random_vector(D, 33)), pool = seen<T>(random_vector(S * (K - 1) * D, 34));
  DeviceBuffer<T> d_x(as<T>(x)), d_w(as<T>(w)), d_b(as<T>(bias)), d_full(as<T>(nans(L * D))),
      d_split(as<T>(nans(L * D))), d_pool1(as<T>(pool)), d_pool2(as<T>(pool));
  DeviceBuffer<int32_t> d_slot(slot);
  // One call.
  ops::causal_conv1d_forward(gpu(), d_full.get(), d_x.get(), ld, d_w.get(), d_b.get(), d_pool1.get(), 1, L, D, K,
                             d_slot.get());
  ops::causal_conv1d_state_update(gpu(), d_pool1.get(), d_x.get(), ld, d_pool1.get(), 1, L, D, K, d_slot.get());
  // Two calls.
  ops::causal_conv1d_forward(gpu(), d_split.get(), d_x.get(), ld, d_w.get(), d_b.get(), d_pool2.get(), 1, L1, D, K,
                             d_slot.get());
  ops::causal_conv1d_state_update(gpu(), d_pool2.get(), d_x.get(), ld, d_pool2.get(), 1, L1, D, K, d_slot.get());
  ops::causal_conv1d_forward(gpu(), d_split.get() + L1 * D, d_x.get() + L1 * ld, ld, d_w.get(), d_b.get(),
                             d_pool2.get(), 1, L2, D, K, d_slot.get());
  ops::causal_conv1d_state_update(gpu(), d_pool2.get(), d_x.get() + L1 * ld, ld, d_pool2.get(), 1, L2, D, K,
                                  d_slot.get());
  const std::string what = "conv L1 " + std::to_string(L1) + " L2 " + std::to_string(L2);
  expect_close(d_split, to_float(d_full.download()), tol<T>(), what + " out");
  expect_equal(d_pool2, to_float(d_pool1.download()), what + " state");
}

TEST(CudaDecodeOps, ConvStateCarried) {
  SAMBALM_REQUIRE_GPU();
  for (auto [L1, L2] : {std::pair<int64_t, int64_t>{1, 1}, {2, 9}, {7, 1}, {13, 5}}) {  // shorter and longer than K-1
    check_conv_carried<float>(L1, L2);
    check_conv_carried<bf16>(L1, L2);
  }
}

// Scan over L1 then L2 tokens (h carried in slot 2 of 3) = one call over L1 + L2; and L steps of the
// one-step scan = the scan. The state starts from random values (a sequence mid-way).
template <typename T>
void check_scan_carried(int64_t L1, int64_t L2) {
  const int64_t D = 21, N = 16, L = L1 + L2, S = 3, ld_bc = 2 * N + 3, chunk = 4;
  const std::vector<int32_t> slot = {2};
  const auto u = seen<T>(random_vector(L * D, 41)), bc = seen<T>(random_vector(L * ld_bc, 42)),
             h0 = random_vector(S * D * N, 43, 0.5f), Dskip = random_vector(D, 44);
  auto delta = random_vector(L * D, 45, 0.5f);
  for (auto& v : delta) v = std::fabs(v) + 0.01f;
  delta = seen<T>(delta);
  auto A = random_vector(D * N, 46);
  for (auto& v : A) v = -std::exp(v);
  DeviceBuffer<T> d_u(as<T>(u)), d_dt(as<T>(delta)), d_bc(as<T>(bc)), d_y1(as<T>(nans(L * D))),
      d_y2(as<T>(nans(L * D))), d_y3(as<T>(nans(L * D)));
  DeviceBuffer<float> d_A(A), d_D(Dskip), d_h1(h0), d_h2(h0), d_h3(h0);
  DeviceBuffer<int32_t> d_slot(slot);
  auto scan = [&](T* y, float* h, int64_t t0, int64_t n) {
    DeviceBuffer<float> cs(size_t(ops::cuda::selective_scan_chunk_states_size(gpu(), 1, n, D, N, chunk)));
    ops::selective_scan_forward(gpu(), y + t0 * D, h, cs.get(), d_u.get() + t0 * D, d_dt.get() + t0 * D, d_A.get(),
                                d_bc.get() + t0 * ld_bc, d_bc.get() + t0 * ld_bc + N, ld_bc, d_D.get(), h, 1, n, D, N,
                                chunk, d_slot.get());
  };
  scan(d_y1.get(), d_h1.get(), 0, L);
  scan(d_y2.get(), d_h2.get(), 0, L1);
  scan(d_y2.get(), d_h2.get(), L1, L2);
  for (int64_t t = 0; t < L; ++t)
    ops::selective_scan_step(gpu(), d_y3.get() + t * D, d_h3.get(), d_u.get() + t * D, d_dt.get() + t * D, d_A.get(),
                             d_bc.get() + t * ld_bc, d_bc.get() + t * ld_bc + N, ld_bc, d_D.get(), 1, D, N,
                             d_slot.get());
  const std::string what = "scan L1 " + std::to_string(L1) + " L2 " + std::to_string(L2);
  const auto y1 = to_float(d_y1.download());
  const auto h1 = d_h1.download();
  expect_close(d_y2, y1, tol<T>(), what + " y (two calls)");
  expect_close(d_h2, h1, 1e-5, what + " h (two calls)");
  expect_close(d_y3, y1, tol<T>(), what + " y (steps)");
  expect_close(d_h3, h1, 1e-5, what + " h (steps)");
  // The other slots' states are untouched.
  const auto h2 = d_h2.download();
  for (int64_t s : {0, 1})
    for (int64_t i = 0; i < D * N; ++i) ASSERT_EQ(h2[s * D * N + i], h0[s * D * N + i]) << what << " slot " << s;
}

TEST(CudaDecodeOps, ScanStateCarried) {
  SAMBALM_REQUIRE_GPU();
  for (auto [L1, L2] : {std::pair<int64_t, int64_t>{1, 1}, {3, 6}, {9, 2}, {13, 11}}) {  // across scan chunks of 4
    check_scan_carried<float>(L1, L2);
    check_scan_carried<bf16>(L1, L2);
  }
}

// q/k/v [B, X, T, hs] -> the tokens t0 .. t0 + n - 1 as [B, X, n, hs].
std::vector<float> tokens_of(const std::vector<float>& a, int64_t B, int64_t X, int64_t Tn, int64_t hs, int64_t t0,
                             int64_t n) {
  std::vector<float> out(B * X * n * hs);
  for (int64_t bx = 0; bx < B * X; ++bx)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t e = 0; e < hs; ++e) out[(bx * n + t) * hs + e] = a[(bx * Tn + t0 + t) * hs + e];
  return out;
}

// Attention over chunks of a sequence (the ring of each slot filled by kv_cache_write after each chunk,
// wrapping for the sliding window) = one attention_forward over the whole sequence. Chunks: sizes
// {5, 1, 1, 7, 3}, so single-token steps sit between prefill chunks.
template <typename T>
void check_attention_chunks(int64_t window, int64_t cap) {
  const int64_t B = 2, H = 4, G = 2, hs = 20, S = 3;
  const std::vector<int64_t> chunks = {5, 1, 1, 7, 3};
  int64_t Tn = 0;
  for (int64_t c : chunks) Tn += c;
  const std::vector<int32_t> slots = {2, 0};
  const double scale = 1.0 / std::sqrt(double(hs));
  const auto q = seen<T>(random_vector(B * H * Tn * hs, 51)), k = seen<T>(random_vector(B * G * Tn * hs, 52)),
             v = seen<T>(random_vector(B * G * Tn * hs, 53));
  DeviceBuffer<T> d_q(as<T>(q)), d_k(as<T>(k)), d_v(as<T>(v)), d_full(as<T>(nans(B * Tn * H * hs)));
  DeviceBuffer<float> d_lse(nans(B * H * Tn));
  ops::attention_forward(gpu(), d_full.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), B, Tn, H, G, hs, window,
                         scale);
  const auto full = to_float(d_full.download());
  // Rings start as random garbage: a query that read an entry not written would change its output.
  DeviceBuffer<T> d_kc(as<T>(random_vector(S * G * cap * hs, 54, 4.f))),
      d_vc(as<T>(random_vector(S * G * cap * hs, 55, 4.f)));
  DeviceBuffer<int32_t> d_slots(slots);
  std::vector<float> want, got_rows;
  int64_t t0 = 0;
  for (int64_t n : chunks) {
    const std::vector<int64_t> pos = {t0, t0};
    DeviceBuffer<int64_t> d_pos(pos);
    DeviceBuffer<T> d_qc(as<T>(tokens_of(q, B, H, Tn, hs, t0, n))), d_kn(as<T>(tokens_of(k, B, G, Tn, hs, t0, n))),
        d_vn(as<T>(tokens_of(v, B, G, Tn, hs, t0, n))), d_out(as<T>(nans(B * n * H * hs)));
    ops::attention_cached_forward(gpu(), d_out.get(), d_qc.get(), d_kn.get(), d_vn.get(), d_kc.get(), d_vc.get(),
                                  d_slots.get(), d_pos.get(), B, n, H, G, hs, cap, window, scale);
    ops::kv_cache_write(gpu(), d_kc.get(), d_vc.get(), d_kn.get(), d_vn.get(), d_slots.get(), d_pos.get(), B, n, G, hs,
                        cap);
    const auto out = to_float(d_out.download());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < n; ++t)
        for (int64_t e = 0; e < H * hs; ++e) {
          got_rows.push_back(out[(b * n + t) * H * hs + e]);
          want.push_back(full[(b * Tn + t0 + t) * H * hs + e]);
        }
    t0 += n;
  }
  EXPECT_LT(rel_error(got_rows, widen(want)), tol<T>()) << "attention in chunks, window " << window << " cap " << cap;
}

TEST(CudaDecodeOps, AttentionOverChunksEqualsOneCall) {
  SAMBALM_REQUIRE_GPU();
  check_attention_chunks<float>(6, 6);   // the ring wraps (17 tokens, 6 entries)
  check_attention_chunks<float>(6, 9);   // ring larger than the window
  check_attention_chunks<float>(0, 17);  // full attention, bounded cache
  check_attention_chunks<bf16>(6, 6);
  check_attention_chunks<bf16>(0, 17);
}

}  // namespace
}  // namespace sambalm
