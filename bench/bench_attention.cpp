// Sliding-window attention on the CPU, forward and backward, at the two shapes that matter:
//   small Samba training step:  B=8  T=256  H=4  G=4  hs=32  W=64
//   Samba_421M long context:    B=1  T=4096 H=12 G=12 hs=128 W=2048
// Reports items/s as attended (query, key) pairs per second, the unit the cost is linear in.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "ops/ops.h"

namespace {

struct Problem {
  int64_t B, Tn, H, G, hs, W;
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
  Problem(int64_t B_, int64_t T_, int64_t H_, int64_t G_, int64_t hs_, int64_t W_)
      : B(B_), Tn(T_), H(H_), G(G_), hs(hs_), W(W_) {
    std::mt19937 rng(0);
    std::normal_distribution<float> nd;
    auto fill = [&](std::vector<float>& x, size_t n) {
      x.resize(n);
      for (auto& e : x) e = nd(rng);
    };
    fill(q, B * H * Tn * hs);
    fill(k, B * G * Tn * hs);
    fill(v, B * G * Tn * hs);
    fill(dout, B * Tn * H * hs);
    out.assign(B * Tn * H * hs, 0.f);
    lse.assign(B * H * Tn, 0.f);
    dq.assign(q.size(), 0.f);
    dk.assign(k.size(), 0.f);
    dv.assign(v.size(), 0.f);
  }
  double scale() const { return 1.0 / std::sqrt(double(hs)); }
  // Number of (query, key) pairs inside the causal window, over all batches and heads.
  int64_t pairs() const {
    int64_t n = 0;
    for (int64_t t = 0; t < Tn; ++t) n += W > 0 ? std::min(t + 1, W) : t + 1;
    return n * B * H;
  }
  void forward() {
    sambalm::ops::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tn, H, G, hs, W,
                                         scale());
  }
  void backward() {
    sambalm::ops::cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(),
                                          q.data(), k.data(), v.data(), B, Tn, H, G, hs, W, scale());
  }
};

Problem make(const benchmark::State& st) {
  return Problem(st.range(0), st.range(1), st.range(2), st.range(3), st.range(4), st.range(5));
}

void BM_AttentionForward(benchmark::State& st) {
  Problem p = make(st);
  for (auto _ : st) {
    p.forward();
    benchmark::DoNotOptimize(p.out.data());
  }
  st.SetItemsProcessed(st.iterations() * p.pairs());
}

void BM_AttentionBackward(benchmark::State& st) {
  Problem p = make(st);
  p.forward();
  for (auto _ : st) {
    p.backward();
    benchmark::DoNotOptimize(p.dq.data());
  }
  st.SetItemsProcessed(st.iterations() * p.pairs());
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "H", "G", "hs", "W"});
  b->Args({8, 256, 4, 4, 32, 64});
  b->Args({1, 4096, 12, 12, 128, 2048});
  b->Unit(benchmark::kMillisecond);
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_AttentionForward)->Apply(shapes);
BENCHMARK(BM_AttentionBackward)->Apply(shapes);
BENCHMARK_MAIN();
