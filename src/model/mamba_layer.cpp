// Mamba mixer (Mamba-1, mamba_ssm mamba_simple.py semantics), forward and backward.
//
//   xz      = in_proj(xn)                       [BT, 2*di]   x = xz[:, :di], z = xz[:, di:]
//   xc      = silu(conv1d_causal(x) + conv_b)   [BT, di]
//   xdbl    = x_proj(xc)                        [BT, R + 2N] = dt_low | B | C
//   dt      = softplus(dt_proj(dt_low) + dt_b)  [BT, di]
//   y       = selective_scan(xc, dt, A = -exp(A_log), B, C) + D * xc
//   out     = out_proj(y * silu(z))             [BT, d]
#include <cmath>

#include "model/layers.h"
#include "ops/ops.h"

namespace sambalm {

int64_t scan_chunk_size() { return 64; }

template <typename T>
void mamba_alloc(MambaActs<T>& a, const MambaDims& m, int64_t B, int64_t Tn) {
  const int64_t BT = B * Tn;
  ensure(a.xz, BT * 2 * m.di);
  ensure(a.conv_out, BT * m.di);
  ensure(a.xc, BT * m.di);
  ensure(a.xdbl, BT * m.xdbl());
  ensure(a.dt_pre, BT * m.di);
  ensure(a.dt, BT * m.di);
  ensure(a.y, BT * m.di);
  ensure(a.yg, BT * m.di);
  ensure(a.chunk_states, ops::selective_scan_chunk_states_size(B, Tn, m.di, m.N, scan_chunk_size()));
}

template <typename T>
static void neg_exp(T* A, const T* A_log, int64_t n) {
  for (int64_t i = 0; i < n; ++i) A[i] = -std::exp(A_log[i]);
}

template <typename T>
void mamba_forward(T* out, MambaActs<T>& a, const T* xn, const T* params, const MambaParams& p, const MambaDims& m,
                   int64_t B, int64_t Tn, LayerScratch<T>& s, const T* h0, T* h_last, const T* conv_state,
                   T* conv_last) {
  const int64_t BT = B * Tn, di = m.di, X = m.xdbl();
  mamba_alloc(a, m, B, Tn);
  ops::matmul_forward(a.xz.data(), xn, p.in_proj_w.at(params), p.in_proj_b.at(params), BT, m.d, 2 * di);
  if (conv_last) ops::causal_conv1d_state_update(conv_last, a.xz.data(), 2 * di, conv_state, B, Tn, di, m.K);
  ops::causal_conv1d_forward(a.conv_out.data(), a.xz.data(), 2 * di, p.conv_w.at(params), p.conv_b.at(params),
                             conv_state, B, Tn, di, m.K);
  ops::silu_forward(a.xc.data(), a.conv_out.data(), BT * di);
  ops::matmul_forward(a.xdbl.data(), a.xc.data(), p.x_proj_w.at(params), static_cast<const T*>(nullptr), BT, di, X);
  ops::matmul_forward_strided(a.dt_pre.data(), di, a.xdbl.data(), X, p.dt_proj_w.at(params), p.dt_proj_b.at(params),
                              BT, m.R, di);
  ops::softplus_forward(a.dt.data(), a.dt_pre.data(), BT * di);
  T* A = ensure(s.A, di * m.N);
  neg_exp(A, p.A_log.at(params), di * m.N);
  ops::selective_scan_forward(a.y.data(), h_last, a.chunk_states.data(), a.xc.data(), a.dt.data(), A,
                              a.xdbl.data() + m.R, a.xdbl.data() + m.R + m.N, X, p.D.at(params), h0, B, Tn, di, m.N,
                              scan_chunk_size());
  ops::silu_gate_forward(a.yg.data(), a.y.data(), a.xz.data() + di, 2 * di, BT, di);
  ops::matmul_forward(out, a.yg.data(), p.out_proj_w.at(params), p.out_proj_b.at(params), BT, di, m.d);
}

template <typename T>
void mamba_backward(T* dxn, T* grads, const T* dout, const MambaActs<T>& a, const T* xn, const T* params,
                    const MambaParams& p, const MambaDims& m, int64_t B, int64_t Tn, LayerScratch<T>& s) {
  const int64_t BT = B * Tn, di = m.di, X = m.xdbl(), N = m.N;
  T* dyg = zeroed(s.d1, BT * di);
  T* dy = zeroed(s.d2, BT * di);
  T* dxz = zeroed(s.d3, BT * 2 * di);
  T* dxc = zeroed(s.d4, BT * di);
  T* ddt = zeroed(s.d5, BT * di);
  T* dxdbl = zeroed(s.d6, BT * X);
  T* ddt_pre = zeroed(s.d7, BT * di);
  T* dA = zeroed(s.dA, di * N);
  T* A = ensure(s.A, di * N);
  neg_exp(A, p.A_log.at(params), di * N);

  ops::matmul_backward(dyg, p.out_proj_w.at(grads), p.out_proj_b.at(grads), dout, a.yg.data(),
                       p.out_proj_w.at(params), BT, di, m.d);
  ops::silu_gate_backward(dy, dxz + di, 2 * di, dyg, a.y.data(), a.xz.data() + di, 2 * di, BT, di);
  T* scan_scratch =
      ensure(s.scan, ops::selective_scan_backward_scratch_size(B, Tn, di, N, scan_chunk_size()));
  ops::selective_scan_backward(dxc, ddt, dA, dxdbl + m.R, dxdbl + m.R + N, p.D.at(grads), static_cast<T*>(nullptr), dy,
                               a.chunk_states.data(), a.xc.data(), a.dt.data(), A, a.xdbl.data() + m.R,
                               a.xdbl.data() + m.R + N, X, p.D.at(params), static_cast<const T*>(nullptr), B, Tn, di, N,
                               scan_chunk_size(), scan_scratch);
  // A = -exp(A_log)  =>  dL/dA_log = dL/dA * A
  T* gA_log = p.A_log.at(grads);
  for (int64_t i = 0; i < di * N; ++i) gA_log[i] += dA[i] * A[i];
  ops::softplus_backward(ddt_pre, ddt, a.dt_pre.data(), BT * di);
  ops::matmul_backward_strided(dxdbl, X, p.dt_proj_w.at(grads), p.dt_proj_b.at(grads), ddt_pre, di, a.xdbl.data(), X,
                               p.dt_proj_w.at(params), BT, m.R, di);
  ops::matmul_backward(dxc, p.x_proj_w.at(grads), static_cast<T*>(nullptr), dxdbl, a.xc.data(),
                       p.x_proj_w.at(params), BT, di, X);
  // dxc now holds d(silu output); map back through silu into d(conv_out), reusing dyg.
  std::fill(dyg, dyg + BT * di, T(0));
  ops::silu_backward(dyg, dxc, a.conv_out.data(), BT * di);
  ops::causal_conv1d_backward(dxz, 2 * di, p.conv_w.at(grads), p.conv_b.at(grads), dyg, a.xz.data(), 2 * di,
                              p.conv_w.at(params), static_cast<const T*>(nullptr), B, Tn, di, m.K);
  ops::matmul_backward(dxn, p.in_proj_w.at(grads), p.in_proj_b.at(grads), dxz, xn, p.in_proj_w.at(params), BT, m.d,
                       2 * di);
}

#define INSTANTIATE(T)                                                                                           \
  template void mamba_alloc<T>(MambaActs<T>&, const MambaDims&, int64_t, int64_t);                              \
  template void mamba_forward<T>(T*, MambaActs<T>&, const T*, const T*, const MambaParams&, const MambaDims&,   \
                                 int64_t, int64_t, LayerScratch<T>&, const T*, T*, const T*, T*);               \
  template void mamba_backward<T>(T*, T*, const T*, const MambaActs<T>&, const T*, const T*, const MambaParams&, \
                                  const MambaDims&, int64_t, int64_t, LayerScratch<T>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace sambalm
