// Forward + backward time of a small Samba on the CPU (the char-level reference recipe's shape by
// default: 4 blocks Mamba/SWA, d=128, 4 heads, MLP 256, window 64, vocab 256, batch 8 x 256).
// Usage: bench_model [--batch B] [--seq T] [--n-embd D] [--n-layer L] [--iters N]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "model/init.h"
#include "model/model.h"
#include "model/params.h"

using namespace sambalm;

int main(int argc, char** argv) {
  int64_t B = 8, Tn = 256, d = 128, L = 4, iters = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    int64_t v = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batch")) B = v;
    else if (!std::strcmp(argv[i], "--seq")) Tn = v;
    else if (!std::strcmp(argv[i], "--n-embd")) d = v;
    else if (!std::strcmp(argv[i], "--n-layer")) L = v;
    else if (!std::strcmp(argv[i], "--iters")) iters = v;
  }
  ModelConfig c;
  c.name = "bench_samba";
  c.n_layer = L;
  c.n_embd = d;
  c.n_head = std::max<int64_t>(1, d / 32);
  c.n_query_groups = c.n_head;
  c.head_size = d / c.n_head;
  c.intermediate_size = 2 * d;
  c.vocab_size = 256;
  c.padded_vocab_size = 256;
  c.local_window = 64;
  c.mb_per_layer = 2;
  c.mamba_init = true;
  ParamStore store(param_specs(c));
  init_params(c, store, 1);
  std::vector<float> grads(store.size());
  std::mt19937 rng(3);
  std::vector<int32_t> tok(B * Tn), tgt(B * Tn);
  for (auto& t : tok) t = rng() % 256;
  for (auto& t : tgt) t = rng() % 256;
  Model<float> model(c, store.entries());
  std::vector<double> fwd, bwd;
  for (int64_t it = 0; it < iters + 2; ++it) {
    std::fill(grads.begin(), grads.end(), 0.f);
    auto t0 = std::chrono::steady_clock::now();
    model.forward(store.data(), tok.data(), tgt.data(), B, Tn);
    auto t1 = std::chrono::steady_clock::now();
    model.backward(store.data(), grads.data());
    auto t2 = std::chrono::steady_clock::now();
    if (it >= 2) {
      fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      bwd.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
  }
  std::sort(fwd.begin(), fwd.end());
  std::sort(bwd.begin(), bwd.end());
  double f = fwd[fwd.size() / 2], b = bwd[bwd.size() / 2];
  std::printf("samba d=%lld L=%lld params=%zu batch=%lld seq=%lld threads=%d\n", (long long)d, (long long)L,
              store.size(), (long long)B, (long long)Tn, omp_get_max_threads());
  std::printf("forward %.1f ms  backward %.1f ms  step %.1f ms  %.0f tokens/s (median of %lld)\n", f, b, f + b,
              B * Tn / ((f + b) / 1000.0), (long long)iters);
  return 0;
}
