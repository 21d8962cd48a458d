// The CUDA elementwise, embedding, RoPE, KV-cache and cross-entropy ops against their CPU twins (run
// in double on the same inputs; for bf16 the inputs rounded to bf16) on odd sizes, forward and
// backward. Outputs that an op overwrites start as NaN (an element left unwritten fails); outputs
// it accumulates into start random (a write instead of an add fails).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "dense_testing.h"
#include "ops/dense_ops.h"
#include "ops/mamba_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

// Not multiples of 8 but 8 and 16: the eight-wide kernels' tails, and chunks only.
const int64_t kSizes[] = {1, 7, 8, 16, 1000 + 3, 4096 + 3};

template <typename T>
class CudaDense : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaDense, ElementTypes);

// ---- elementwise ------------------------------------------------------------------------------

TYPED_TEST(CudaDense, AddInplace) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  // 2.1 M elements: more than the grid covers in one sweep, so the grid-stride loop wraps.
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1003}, int64_t{2100003}}) {
    const auto y0 = random_for<T>(n, 1), x = random_for<T>(n, 2);
    auto d_y = upload<T>(y0);
    auto d_x = upload<T>(x);
    ops::add_inplace(gpu(), d_y.get(), d_x.get(), n);
    auto want = to_double(y0);
    const auto xd = to_double(x);
    ops::cpu::add_inplace(want.data(), xd.data(), n);
    expect_close(fetch(d_y), want, elem_tol<T>(),
                 std::string("add_inplace ") + type_name<T>() + " n=" + std::to_string(n));
  }
}

// Forward f(out, x) and backward b(dx, dout, x) of a unary activation: GPU against ops::cpu in double.
template <typename T, typename GpuF, typename CpuF, typename GpuB, typename CpuB>
void check_unary(const char* name, float scale, GpuF gpu_fwd, CpuF cpu_fwd, GpuB gpu_bwd, CpuB cpu_bwd) {
  for (int64_t n : kSizes) {
    const auto x = random_for<T>(n, 3, scale), dout = random_for<T>(n, 4), dx0 = random_for<T>(n, 5);
    auto d_x = upload<T>(x);
    auto d_dout = upload<T>(dout);
    auto d_out = upload<T>(nan_vector(n));
    auto d_dx = upload<T>(dx0);
    gpu_fwd(d_out.get(), d_x.get(), n);
    gpu_bwd(d_dx.get(), d_dout.get(), d_x.get(), n);
    const auto xd = to_double(x), doutd = to_double(dout);
    std::vector<double> out(n), dx = to_double(dx0);
    cpu_fwd(out.data(), xd.data(), n);
    cpu_bwd(dx.data(), doutd.data(), xd.data(), n);
    const std::string tag = std::string(name) + " " + type_name<T>() + " n=" + std::to_string(n);
    expect_close(fetch(d_out), out, elem_tol<T>(), tag + " forward");
    expect_close(fetch(d_dx), dx, elem_tol<T>(), tag + " backward");
  }
}

TYPED_TEST(CudaDense, Silu) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  check_unary<T>(
      "silu", 6.f, [](T* o, const T* x, int64_t n) { ops::silu_forward(gpu(), o, x, n); },
      [](double* o, const double* x, int64_t n) { ops::cpu::silu_forward(o, x, n); },
      [](T* dx, const T* g, const T* x, int64_t n) { ops::silu_backward(gpu(), dx, g, x, n); },
      [](double* dx, const double* g, const double* x, int64_t n) { ops::cpu::silu_backward(dx, g, x, n); });
}

TYPED_TEST(CudaDense, Softplus) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  // Inputs in [-30, 30]: both sides of the linear branch above 20.
  check_unary<T>(
      "softplus", 30.f, [](T* o, const T* x, int64_t n) { ops::softplus_forward(gpu(), o, x, n); },
      [](double* o, const double* x, int64_t n) { ops::cpu::softplus_forward(o, x, n); },
      [](T* dx, const T* g, const T* x, int64_t n) { ops::softplus_backward(gpu(), dx, g, x, n); },
      [](double* dx, const double* g, const double* x, int64_t n) { ops::cpu::softplus_backward(dx, g, x, n); });
}

TYPED_TEST(CudaDense, Swiglu) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : kSizes) {
    const auto a = random_for<T>(n, 6, 5.f), b = random_for<T>(n, 7, 2.f), dout = random_for<T>(n, 8);
    const auto da0 = random_for<T>(n, 9), db0 = random_for<T>(n, 10);
    auto d_a = upload<T>(a);
    auto d_b = upload<T>(b);
    auto d_dout = upload<T>(dout);
    auto d_out = upload<T>(nan_vector(n));
    auto d_da = upload<T>(da0);
    auto d_db = upload<T>(db0);
    ops::swiglu_forward(gpu(), d_out.get(), d_a.get(), d_b.get(), n);
    ops::swiglu_backward(gpu(), d_da.get(), d_db.get(), d_dout.get(), d_a.get(), d_b.get(), n);
    const auto ad = to_double(a), bd = to_double(b), gd = to_double(dout);
    std::vector<double> out(n), da = to_double(da0), db = to_double(db0);
    ops::cpu::swiglu_forward(out.data(), ad.data(), bd.data(), n);
    ops::cpu::swiglu_backward(da.data(), db.data(), gd.data(), ad.data(), bd.data(), n);
    const std::string tag = std::string("swiglu ") + type_name<T>() + " n=" + std::to_string(n);
    expect_close(fetch(d_out), out, elem_tol<T>(), tag + " out");
    expect_close(fetch(d_da), da, elem_tol<T>(), tag + " da");
    expect_close(fetch(d_db), db, elem_tol<T>(), tag + " db");
    // A null gradient is skipped: db alone.
    auto d_db2 = upload<T>(db0);
    ops::swiglu_backward(gpu(), static_cast<T*>(nullptr), d_db2.get(), d_dout.get(), d_a.get(), d_b.get(), n);
    expect_close(fetch(d_db2), db, elem_tol<T>(), tag + " db (da null)");
  }
}

// Views one element into their buffers (not 16-byte aligned): the scalar kernels, the same results.
TYPED_TEST(CudaDense, SwigluMisalignedViews) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  const int64_t n = 1003;
  const auto a = random_for<T>(n + 1, 56, 5.f), b = random_for<T>(n + 1, 57), dout = random_for<T>(n + 1, 58);
  const auto da0 = random_for<T>(n + 1, 59), db0 = random_for<T>(n + 1, 60);
  auto d_a = upload<T>(a);
  auto d_b = upload<T>(b);
  auto d_dout = upload<T>(dout);
  auto d_out = upload<T>(nan_vector(n + 1));
  auto d_da = upload<T>(da0);
  auto d_db = upload<T>(db0);
  ops::swiglu_forward(gpu(), d_out.get() + 1, d_a.get() + 1, d_b.get() + 1, n);
  ops::swiglu_backward(gpu(), d_da.get() + 1, d_db.get() + 1, d_dout.get() + 1, d_a.get() + 1, d_b.get() + 1, n);
  const auto ad = to_double(a), bd = to_double(b), gd = to_double(dout);
  std::vector<double> out(n + 1), da = to_double(da0), db = to_double(db0);
  ops::cpu::swiglu_forward(out.data() + 1, ad.data() + 1, bd.data() + 1, n);
  ops::cpu::swiglu_backward(da.data() + 1, db.data() + 1, gd.data() + 1, ad.data() + 1, bd.data() + 1, n);
  auto got = fetch(d_out);
  got.erase(got.begin());
  out.erase(out.begin());
  const std::string tag = std::string("swiglu misaligned ") + type_name<T>();
  expect_close(got, out, elem_tol<T>(), tag + " out");
  expect_close(fetch(d_da), da, elem_tol<T>(), tag + " da");
  expect_close(fetch(d_db), db, elem_tol<T>(), tag + " db");
}

TYPED_TEST(CudaDense, SiluGate) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t rows : {1, 7, 37})
    for (int64_t D : {1, 5, 129}) {
      const int64_t ld_z = D + 3, ld_dz = D + 2;  // z and dz are views into wider rows
      const auto y = random_for<T>(rows * D, 11, 2.f), z = random_for<T>(rows * ld_z, 12, 6.f);
      const auto dout = random_for<T>(rows * D, 13), dy0 = random_for<T>(rows * D, 14);
      const auto dz0 = random_for<T>(rows * ld_dz, 15);
      auto d_y = upload<T>(y);
      auto d_z = upload<T>(z);
      auto d_dout = upload<T>(dout);
      auto d_out = upload<T>(nan_vector(rows * D));
      auto d_dy = upload<T>(dy0);
      auto d_dz = upload<T>(dz0);
      ops::silu_gate_forward(gpu(), d_out.get(), d_y.get(), d_z.get(), ld_z, rows, D);
      ops::silu_gate_backward(gpu(), d_dy.get(), d_dz.get(), ld_dz, d_dout.get(), d_y.get(), d_z.get(), ld_z, rows, D);
      const auto yd = to_double(y), zd = to_double(z), gd = to_double(dout);
      std::vector<double> out(rows * D), dy = to_double(dy0), dz = to_double(dz0);
      ops::cpu::silu_gate_forward(out.data(), yd.data(), zd.data(), ld_z, rows, D);
      ops::cpu::silu_gate_backward(dy.data(), dz.data(), ld_dz, gd.data(), yd.data(), zd.data(), ld_z, rows, D);
      const std::string tag =
          std::string("silu_gate ") + type_name<T>() + " rows=" + std::to_string(rows) + " D=" + std::to_string(D);
      expect_close(fetch(d_out), out, elem_tol<T>(), tag + " out");
      expect_close(fetch(d_dy), dy, elem_tol<T>(), tag + " dy");
      // The whole dz buffer: the columns between rows must keep their values.
      expect_close(fetch(d_dz), dz, elem_tol<T>(), tag + " dz");
      // dz alone (dy null).
      auto d_dz2 = upload<T>(dz0);
      ops::silu_gate_backward(gpu(), static_cast<T*>(nullptr), d_dz2.get(), ld_dz, d_dout.get(), d_y.get(), d_z.get(),
                              ld_z, rows, D);
      expect_close(fetch(d_dz2), dz, elem_tol<T>(), tag + " dz (dy null)");
    }
}

// A = -exp(A_log) exists in fp32 only (A_log and A are fp32 masters in every precision).
TEST(CudaDenseFp32, NegExp) {
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : kSizes) {
    const auto a_log = random_vector(n, 16, 3.f), dA = random_vector(n, 17), dA_log0 = random_vector(n, 18);
    DeviceBuffer<float> d_alog(a_log), d_A(nan_vector(n)), d_dA(dA), d_dalog(dA_log0);
    ops::neg_exp_forward(gpu(), d_A.get(), d_alog.get(), n);
    const auto A_gpu = d_A.download();
    ops::neg_exp_backward(gpu(), d_dalog.get(), d_dA.get(), d_A.get(), n);
    const auto ald = to_double(a_log), dAd = to_double(dA), A_in = to_double(A_gpu);
    std::vector<double> A(n), dalog = to_double(dA_log0);
    ops::cpu::neg_exp_forward(A.data(), ald.data(), n);
    ops::cpu::neg_exp_backward(dalog.data(), dAd.data(), A_in.data(), n);
    expect_close(A_gpu, A, 1e-6, "neg_exp forward n=" + std::to_string(n));
    expect_close(d_dalog.download(), dalog, 1e-6, "neg_exp backward n=" + std::to_string(n));
  }
}

// ---- embedding ------------------------------------------------------------------------------

TYPED_TEST(CudaDense, Embedding) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  const int64_t V = 11;  // few rows: ids repeat often, so the backward's scatter meets itself
  // n = 2050 spans more than one tile of staged ids (1024).
  for (int64_t n : {1, 7, 1003, 2050})
    for (int64_t C : {1, 37, 129, 1537}) {
      std::mt19937 rng(static_cast<uint32_t>(n * 31 + C));
      std::vector<int32_t> ids(n);
      for (auto& id : ids) id = static_cast<int32_t>(rng() % V);
      const auto table = random_for<T>(V * C, 19), dout = random_for<T>(n * C, 20);
      const auto dtable0 = random_for<T>(V * C, 21);
      DeviceBuffer<int32_t> d_ids(ids);
      auto d_table = upload<T>(table);
      auto d_dout = upload<T>(dout);
      auto d_out = upload<T>(nan_vector(n * C));
      auto d_dtable = upload<T>(dtable0);
      ops::embedding_forward(gpu(), d_out.get(), d_ids.get(), d_table.get(), n, C);
      ops::embedding_backward(gpu(), d_dtable.get(), d_dout.get(), d_ids.get(), n, C);
      const auto td = to_double(table), gd = to_double(dout);
      std::vector<double> out(n * C), dtable = to_double(dtable0);
      ops::cpu::embedding_forward(out.data(), ids.data(), td.data(), n, C);
      ops::cpu::embedding_backward(dtable.data(), gd.data(), ids.data(), n, C);
      const std::string tag =
          std::string("embedding ") + type_name<T>() + " n=" + std::to_string(n) + " C=" + std::to_string(C);
      expect_close(fetch(d_out), out, 1e-12, tag + " forward (a copy)");
      // Each table element receives its tokens in token order, each add rounded to T: the same bits
      // as that sequence of adds on the host (for fp32, the CPU op's own float sums).
      std::vector<float> exact = dtable0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < C; ++c) {
          float& e = exact[int64_t(ids[i]) * C + c];
          e = prep<T>({e + dout[i * C + c]})[0];
        }
      const auto got = fetch(d_dtable);
      EXPECT_EQ(got, exact) << tag << " backward: not the token-order sums";
      // bf16 rounds the accumulating row at every token (ids repeat ~n/11 times here), hence the
      // looser bound against the exact sums.
      expect_close(got, dtable, std::is_same_v<T, float> ? 1e-5 : 5e-2, tag + " backward");
    }
}

TEST(CudaDenseFp32, EmbeddingBackwardIsDeterministic) {
  SAMBALM_REQUIRE_GPU();
  const int64_t n = 3001, C = 257, V = 5;
  std::mt19937 rng(7);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % V);
  const auto dout = random_vector(n * C, 22);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<float> d_dout(dout), a(std::vector<float>(V * C, 0.f)), b(std::vector<float>(V * C, 0.f));
  ops::embedding_backward(gpu(), a.get(), d_dout.get(), d_ids.get(), n, C);
  ops::embedding_backward(gpu(), b.get(), d_dout.get(), d_ids.get(), n, C);
  // Token order per element, as the CPU: the same bits as the CPU's float sums, and run to run.
  std::vector<float> cpu(V * C, 0.f);
  ops::cpu::embedding_backward(cpu.data(), dout.data(), ids.data(), n, C);
  EXPECT_EQ(a.download(), b.download());
  EXPECT_EQ(a.download(), cpu);
}

// ---- RoPE and the qkv split ---------------------------------------------------------------------

TYPED_TEST(CudaDense, RopeTable) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t max_pos : {1, 37, 4099})
    for (int64_t rope_dims : {2, 10, 128})
      for (double cr : {1.0, 4.0}) {
        const int64_t half = rope_dims / 2;
        auto d_cos = upload<T>(nan_vector(max_pos * half));
        auto d_sin = upload<T>(nan_vector(max_pos * half));
        ops::rope_table(gpu(), d_cos.get(), d_sin.get(), max_pos, rope_dims, 10000.0, cr);
        std::vector<double> c(max_pos * half), s(max_pos * half);
        ops::cpu::rope_table(c.data(), s.data(), max_pos, rope_dims, 10000.0, cr);
        const std::string tag = std::string("rope_table ") + type_name<T>() + " max_pos=" + std::to_string(max_pos) +
                                " dims=" + std::to_string(rope_dims) + " condense=" + std::to_string(cr);
        // fp32: the double angle rounded once, as the CPU: within a float's rounding.
        const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-2;
        expect_close(fetch(d_cos), c, tol, tag + " cos");
        expect_close(fetch(d_sin), s, tol, tag + " sin");
      }
}

TYPED_TEST(CudaDense, RopeAtPositions) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  const int64_t B = 3, L = 5, rope_dims = 18, half = rope_dims / 2;
  const std::vector<int64_t> pos = {0, 17, 4000};
  DeviceBuffer<int64_t> d_pos(pos);
  auto d_cos = upload<T>(nan_vector(B * L * half));
  auto d_sin = upload<T>(nan_vector(B * L * half));
  ops::rope_at_positions(gpu(), d_cos.get(), d_sin.get(), d_pos.get(), B, L, rope_dims, 500000.0, 2.0);
  std::vector<double> c(B * L * half), s(B * L * half);
  ops::cpu::rope_at_positions(c.data(), s.data(), pos.data(), B, L, rope_dims, 500000.0, 2.0);
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-2;
  expect_close(fetch(d_cos), c, tol, std::string("rope_at_positions cos ") + type_name<T>());
  expect_close(fetch(d_sin), s, tol, std::string("rope_at_positions sin ") + type_name<T>());
}

struct QkvShape {
  int64_t B, Tn, H, G, hs, rope_dims, pos0, cs_batch_rows;
};
// GQA, MQA, MHA; no RoPE, partial RoPE, full RoPE; one table for all sequences or one per sequence.
const QkvShape kQkvShapes[] = {
    {2, 7, 4, 2, 10, 6, 3, 0},
    {1, 5, 3, 1, 8, 8, 0, 0},
    {3, 4, 2, 2, 6, 0, 0, 0},
    {2, 9, 6, 3, 16, 16, 2, 13},
    // hs and rope_dims / 2 multiples of 8: the eight-wide kernels. Samba's heads of 128 under GQA and
    // MHA, partial RoPE with pass-through dims (MQA, per-sequence tables), no RoPE, and hs 40 (five
    // chunks a head, rows whose units do not fill a warp).
    {2, 33, 12, 4, 128, 128, 0, 0},
    {1, 17, 3, 3, 128, 128, 5, 0},
    {3, 5, 4, 1, 64, 32, 1, 7},
    {1, 3, 4, 4, 24, 0, 0, 0},
    {2, 3, 6, 2, 40, 16, 0, 0},
};

TYPED_TEST(CudaDense, QkvSplitRope) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (const auto& s : kQkvShapes) {
    const int64_t row = (s.H + 2 * s.G) * s.hs, half = s.rope_dims / 2;
    const int64_t table_rows = (s.B - 1) * s.cs_batch_rows + s.pos0 + s.Tn;
    const int64_t nq = s.B * s.H * s.Tn * s.hs, nk = s.B * s.G * s.Tn * s.hs;
    const auto qkv = random_for<T>(s.B * s.Tn * row, 23),
               cosv = random_for<T>(std::max<int64_t>(1, table_rows * half), 24);
    const auto sinv = random_for<T>(std::max<int64_t>(1, table_rows * half), 25);
    const auto dq = random_for<T>(nq, 26), dk = random_for<T>(nk, 27), dv = random_for<T>(nk, 28);
    const auto dqkv0 = random_for<T>(s.B * s.Tn * row, 29);
    auto d_qkv = upload<T>(qkv);
    auto d_cos = upload<T>(cosv);
    auto d_sin = upload<T>(sinv);
    auto d_q = upload<T>(nan_vector(nq));
    auto d_k = upload<T>(nan_vector(nk));
    auto d_v = upload<T>(nan_vector(nk));
    auto d_dq = upload<T>(dq);
    auto d_dk = upload<T>(dk);
    auto d_dv = upload<T>(dv);
    auto d_dqkv = upload<T>(dqkv0);
    auto d_dqkv2 = upload<T>(dqkv0);
    ops::qkv_split_rope_forward(gpu(), d_q.get(), d_k.get(), d_v.get(), d_qkv.get(), d_cos.get(), d_sin.get(), s.B,
                                s.Tn, s.H, s.G, s.hs, s.rope_dims, s.pos0, s.cs_batch_rows);
    ops::qkv_split_rope_backward(gpu(), d_dqkv.get(), d_dq.get(), d_dk.get(), d_dv.get(), d_cos.get(), d_sin.get(), s.B,
                                 s.Tn, s.H, s.G, s.hs, s.rope_dims, s.pos0, s.cs_batch_rows);
    ops::qkv_split_rope_backward(gpu(), d_dqkv2.get(), d_dq.get(), static_cast<T*>(nullptr), d_dv.get(), d_cos.get(),
                                 d_sin.get(), s.B, s.Tn, s.H, s.G, s.hs, s.rope_dims, s.pos0, s.cs_batch_rows);
    const auto qkvd = to_double(qkv), cd = to_double(cosv), sd = to_double(sinv);
    const auto dqd = to_double(dq), dkd = to_double(dk), dvd = to_double(dv);
    std::vector<double> q(nq), k(nk), v(nk), dqkv = to_double(dqkv0), dqkv2 = to_double(dqkv0);
    ops::cpu::qkv_split_rope_forward(q.data(), k.data(), v.data(), qkvd.data(), cd.data(), sd.data(), s.B, s.Tn, s.H,
                                     s.G, s.hs, s.rope_dims, s.pos0, s.cs_batch_rows);
    ops::cpu::qkv_split_rope_backward(dqkv.data(), dqd.data(), dkd.data(), dvd.data(), cd.data(), sd.data(), s.B, s.Tn,
                                      s.H, s.G, s.hs, s.rope_dims, s.pos0, s.cs_batch_rows);
    ops::cpu::qkv_split_rope_backward(dqkv2.data(), dqd.data(), static_cast<const double*>(nullptr), dvd.data(),
                                      cd.data(), sd.data(), s.B, s.Tn, s.H, s.G, s.hs, s.rope_dims, s.pos0,
                                      s.cs_batch_rows);
    const std::string tag = std::string("qkv_split_rope ") + type_name<T>() + " B" + std::to_string(s.B) + " T" +
                            std::to_string(s.Tn) + " H" + std::to_string(s.H) + " G" + std::to_string(s.G) + " hs" +
                            std::to_string(s.hs) + " rope" + std::to_string(s.rope_dims);
    expect_close(fetch(d_q), q, elem_tol<T>(), tag + " q");
    expect_close(fetch(d_k), k, elem_tol<T>(), tag + " k");
    expect_close(fetch(d_v), v, elem_tol<T>(), tag + " v");
    expect_close(fetch(d_dqkv), dqkv, elem_tol<T>(), tag + " dqkv");
    expect_close(fetch(d_dqkv2), dqkv2, elem_tol<T>(), tag + " dqkv (dk null)");
  }
}

// ---- KV cache -----------------------------------------------------------------------------------

TYPED_TEST(CudaDense, KvCacheWrite) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  const int64_t S = 3, B = 2, G = 2, hs = 5, cap = 4;
  const std::vector<int32_t> slots = {2, 0};
  const std::vector<int64_t> pos = {5, 0};
  DeviceBuffer<int32_t> d_slots(slots);
  DeviceBuffer<int64_t> d_pos(pos);
  for (int64_t L : {1, 3, 6}) {  // 6 > cap: only the last cap new tokens survive
    const int64_t n_new = B * G * L * hs, n_cache = S * G * cap * hs;
    const auto k_new = random_for<T>(n_new, 30), v_new = random_for<T>(n_new, 31);
    const auto k0 = random_for<T>(n_cache, 32), v0 = random_for<T>(n_cache, 33);
    auto d_knew = upload<T>(k_new);
    auto d_vnew = upload<T>(v_new);
    auto d_k = upload<T>(k0);
    auto d_v = upload<T>(v0);
    ops::kv_cache_write(gpu(), d_k.get(), d_v.get(), d_knew.get(), d_vnew.get(), d_slots.get(), d_pos.get(), B, L, G,
                        hs, cap);
    const auto knd = to_double(k_new), vnd = to_double(v_new);
    std::vector<double> k = to_double(k0), v = to_double(v0);
    ops::cpu::kv_cache_write(k.data(), v.data(), knd.data(), vnd.data(), slots.data(), pos.data(), B, L, G, hs, cap);
    const std::string tag = std::string("kv_cache_write ") + type_name<T>() + " L=" + std::to_string(L);
    expect_close(fetch(d_k), k, 1e-12, tag + " k (a copy)");
    expect_close(fetch(d_v), v, 1e-12, tag + " v (a copy)");
  }
}

// ---- cross-entropy ------------------------------------------------------------------------------

template <typename T>
void check_cross_entropy(int64_t n, int64_t V, bool some_ignored, bool all_ignored, bool alias) {
  std::mt19937 rng(static_cast<uint32_t>(n * 7 + V));
  std::vector<int32_t> targets(n);
  for (int64_t i = 0; i < n; ++i) {
    targets[i] = static_cast<int32_t>(rng() % V);
    if (all_ignored || (some_ignored && rng() % 4 == 0)) targets[i] = -1;
  }
  const auto logits = random_for<T>(n * V, 34, 5.f);
  const double scale = 0.7;
  DeviceBuffer<int32_t> d_targets(targets);
  auto d_logits = upload<T>(logits);
  auto d_dlogits = upload<T>(nan_vector(n * V));
  DeviceBuffer<float> d_losses(nan_vector(n));
  T* dl = alias ? d_logits.get() : d_dlogits.get();
  const double mean =
      ops::cross_entropy_forward_backward(gpu(), dl, d_losses.get(), d_logits.get(), d_targets.get(), n, V, scale);
  const auto ld = to_double(logits);
  std::vector<double> dlogits(n * V), losses(n);
  const double want =
      ops::cpu::cross_entropy_forward_backward(dlogits.data(), losses.data(), ld.data(), targets.data(), n, V, scale);
  const std::string tag = std::string("cross_entropy ") + type_name<T>() + " n=" + std::to_string(n) +
                          " V=" + std::to_string(V) + (some_ignored ? " some ignored" : "") +
                          (all_ignored ? " all ignored" : "") + (alias ? " in place" : "");
  // The loss is a sum of fp32 row sums: within 1e-5 of the double reference in both precisions
  // (bf16 changes only how the logits were stored).
  if (all_ignored)
    EXPECT_EQ(mean, 0.0) << tag;
  else
    EXPECT_NEAR(mean, want, 1e-5 * std::fabs(want)) << tag;
  expect_close(d_losses.download(), losses, 1e-5, tag + " losses");
  expect_close(alias ? fetch(d_logits) : fetch(d_dlogits), dlogits, elem_tol<T>(), tag + " dlogits");
}

TYPED_TEST(CudaDense, CrossEntropy) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : {1, 7, 37})
    for (int64_t V : {5, 129, 1537, 32000}) {
      check_cross_entropy<T>(n, V, false, false, false);
      check_cross_entropy<T>(n, V, true, false, false);
    }
  check_cross_entropy<T>(7, 129, false, true, false);   // nothing counted: mean 0, zero gradients
  check_cross_entropy<T>(37, 1537, true, false, true);  // dlogits written over the logits
  check_cross_entropy<T>(2051, 7, true, false, false);  // more rows than blocks: each block takes several
}

TEST(CudaDenseFp32, CrossEntropyIsDeterministic) {
  SAMBALM_REQUIRE_GPU();
  const int64_t n = 3001, V = 97;
  std::vector<int32_t> targets(n);
  for (int64_t i = 0; i < n; ++i) targets[i] = static_cast<int32_t>((i * 13) % V);
  DeviceBuffer<int32_t> d_targets(targets);
  DeviceBuffer<float> d_logits(random_vector(n * V, 35, 4.f)), d_dlogits(n * V);
  const double a = ops::cross_entropy_forward_backward(gpu(), d_dlogits.get(), static_cast<float*>(nullptr),
                                                       d_logits.get(), d_targets.get(), n, V, 1.0);
  const double b = ops::cross_entropy_forward_backward(gpu(), d_dlogits.get(), static_cast<float*>(nullptr),
                                                       d_logits.get(), d_targets.get(), n, V, 1.0);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace sambalm
