// Mamba mixer (Mamba-1, mamba_ssm mamba_simple.py semantics), forward and backward.
//
//   xz      = in_proj(xn)                       [BL, 2*di]   x = xz[:, :di], z = xz[:, di:]
//   xc      = silu(conv1d_causal(x) + conv_b)   [BL, di]     (conv state: the K-1 inputs before x)
//   xdbl    = x_proj(xc)                        [BL, R + 2N] = dt_low | B | C
//   dt      = softplus(dt_proj(dt_low) + dt_b)  [BL, di]
//   y       = selective_scan(xc, dt, A, B, C; h0) + D * xc     A = -exp(A_log), h0 the SSM state
//   out     = out_proj(y * silu(z))             [BL, d]
#include "model/layers.h"
#include "model/linear.h"
#include "ops/ops.h"
#include "ops/profiler.h"

namespace sambalm {

int64_t scan_chunk_size() { return ops::kSelectiveScanDefaultChunk; }

template <typename T>
void plan_mamba_acts(const Context& ctx, Arena& ar, MambaActs<T>& a, const MambaDims& m, int64_t B, int64_t L,
                     bool scan_chunks) {
  const int64_t BL = B * L;
  a.xz = ar.take<T>(BL * 2 * m.di);
  a.conv_out = ar.take<T>(BL * m.di);
  a.xc = ar.take<T>(BL * m.di);
  a.xdbl = ar.take<T>(BL * m.xdbl());
  a.dt_pre = ar.take<stat_t<T>>(BL * m.di);
  a.dt = ar.take<T>(BL * m.di);
  a.y = ar.take<T>(BL * m.di);
  a.yg = ar.take<T>(BL * m.di);
  a.chunk_states =
      scan_chunks
          ? ar.take<stat_t<T>>(ops::selective_scan_chunk_states_size<T>(ctx, B, L, m.di, m.N, scan_chunk_size()))
          : nullptr;
}

template <typename T>
void plan_mamba_grads(const Context& ctx, Arena& ar, MambaGrads<T>& g, const MambaDims& m, int64_t B, int64_t L) {
  const int64_t BL = B * L;
  g.dgated = ar.take<T>(BL * m.di);
  g.dy = ar.take<T>(BL * m.di);
  g.dxz = ar.take<T>(BL * 2 * m.di);
  g.dxc = ar.take<T>(BL * m.di);
  g.ddt = ar.take<T>(BL * m.di);
  g.dxdbl = ar.take<T>(BL * m.xdbl());
  g.ddt_pre = ar.take<T>(BL * m.di);
  g.dA = ar.take<stat_t<T>>(m.di * m.N);
  g.scan = ar.take<stat_t<T>>(ops::selective_scan_backward_scratch_size<T>(ctx, B, L, m.di, m.N, scan_chunk_size()));
}

template <typename T>
void mamba_forward(const Context& ctx, T* out, const MambaActs<T>& a, const T* xn, const T* params,
                   const stat_t<T>* master, const MambaParams& p, const MambaDims& m, const stat_t<T>* A, int64_t B,
                   int64_t L, const LayerState<T>* st) {
  const int64_t BL = B * L, di = m.di, X = m.xdbl();
  const int32_t* slots = st ? st->slots : nullptr;
  linear_forward(ctx, a.xz, xn, params, p.in_proj_w, p.in_proj_b.at(params), BL, m.d, 2 * di);
  profile_mark("fwd mamba in_proj");
  // conv_out (kept for the backward) and xc = silu(conv_out) in one pass.
  ops::causal_conv1d_silu_forward(ctx, a.conv_out, a.xc, a.xz, 2 * di, p.conv_w.at(params), p.conv_b.at(params),
                                  st ? st->conv : static_cast<const T*>(nullptr), B, L, di, m.K, slots);
  // In place: the new state is the last K-1 rows of (old state ++ x), copied in an order that reads
  // each old row before it is overwritten.
  if (st) ops::causal_conv1d_state_update(ctx, st->conv, a.xz, 2 * di, st->conv, B, L, di, m.K, slots);
  profile_mark("fwd mamba conv");
  linear_forward(ctx, a.xdbl, a.xc, params, p.x_proj_w, static_cast<const T*>(nullptr), BL, di, X);
  // dt_pre and the dt bias are fp32 beside bf16 (DESIGN.md "Numerics"): the bias from the master copy.
  linear_forward(ctx, a.dt_pre, di, a.xdbl, X, params, p.dt_proj_w, p.dt_proj_b.at(master), BL, m.R, di);
  ops::softplus_forward(ctx, a.dt, a.dt_pre, BL * di);
  profile_mark("fwd mamba x_proj/dt_proj");
  const T *Bm = a.xdbl + m.R, *Cm = a.xdbl + m.R + m.N;
  if (st && L == 1) {
    ops::selective_scan_step(ctx, a.y, st->ssm, a.xc, a.dt, A, Bm, Cm, X, p.D.at(master), B, di, m.N, slots);
  } else {
    // The SSM state is read (h0) before the final state overwrites it (h_last) block by block.
    ops::selective_scan_forward(ctx, a.y, st ? st->ssm : static_cast<stat_t<T>*>(nullptr), a.chunk_states, a.xc, a.dt,
                                A, Bm, Cm, X, p.D.at(master), st ? st->ssm : static_cast<const stat_t<T>*>(nullptr), B,
                                L, di, m.N, scan_chunk_size(), slots);
  }
  profile_mark("fwd mamba scan");
  ops::silu_gate_forward(ctx, a.yg, a.y, a.xz + di, 2 * di, BL, di);
  profile_mark("fwd mamba silu gate");
  linear_forward(ctx, out, a.yg, params, p.out_proj_w, p.out_proj_b.at(params), BL, di, m.d);
  profile_mark("fwd mamba out_proj");
}

template <typename T>
void mamba_backward(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout, const MambaActs<T>& a, const T* xn,
                    const T* params, const stat_t<T>* master, const MambaParams& p, const MambaDims& m,
                    const stat_t<T>* A, int64_t B, int64_t L, const MambaGrads<T>& g, const T* dy_extra) {
  const int64_t BL = B * L, di = m.di, X = m.xdbl(), N = m.N;
  auto zero = [&](auto* x, int64_t n) { ops::fill_zero(ctx, x, n); };
  zero(g.dgated, BL * di);
  zero(g.dy, BL * di);
  zero(g.dxz, BL * 2 * di);
  zero(g.dxc, BL * di);
  zero(g.ddt, BL * di);
  zero(g.dxdbl, BL * X);
  zero(g.ddt_pre, BL * di);
  zero(g.dA, di * N);
  if (dy_extra) ops::add_inplace(ctx, g.dy, dy_extra, BL * di);
  profile_mark("bwd mamba zero grads");

  ops::matmul_backward(ctx, g.dgated, p.out_proj_w.at(grads), p.out_proj_b.at(grads), dout, a.yg,
                       p.out_proj_w.at(params), BL, di, m.d);
  profile_mark("bwd mamba out_proj");
  ops::silu_gate_backward(ctx, g.dy, g.dxz + di, 2 * di, g.dgated, a.y, a.xz + di, 2 * di, BL, di);
  profile_mark("bwd mamba silu gate");
  ops::selective_scan_backward(ctx, g.dxc, g.ddt, g.dA, g.dxdbl + m.R, g.dxdbl + m.R + N, p.D.at(grads),
                               static_cast<stat_t<T>*>(nullptr), g.dy, a.chunk_states, a.xc, a.dt, A, a.xdbl + m.R,
                               a.xdbl + m.R + N, X, p.D.at(master), static_cast<const stat_t<T>*>(nullptr), B, L, di, N,
                               scan_chunk_size(), g.scan);
  ops::neg_exp_backward(ctx, p.A_log.at(grads), g.dA, A, di * N);
  profile_mark("bwd mamba scan");
  ops::softplus_backward(ctx, g.ddt_pre, g.ddt, a.dt_pre, BL * di);
  ops::matmul_backward_strided(ctx, g.dxdbl, X, p.dt_proj_w.at(grads), p.dt_proj_b.at(grads), g.ddt_pre, di, a.xdbl, X,
                               p.dt_proj_w.at(params), BL, m.R, di);
  ops::matmul_backward(ctx, g.dxc, p.x_proj_w.at(grads), static_cast<grad_t<T>*>(nullptr), g.dxdbl, a.xc,
                       p.x_proj_w.at(params), BL, di, X);
  profile_mark("bwd mamba x_proj/dt_proj");
  // dxc now holds d(silu output): back through the SiLU and the conv in one pass (d(conv_out) is
  // computed on the fly from conv_out, never stored).
  ops::causal_conv1d_silu_backward(ctx, g.dxz, 2 * di, p.conv_w.at(grads), p.conv_b.at(grads), g.dxc, a.conv_out, a.xz,
                                   2 * di, p.conv_w.at(params), static_cast<const T*>(nullptr), B, L, di, m.K);
  profile_mark("bwd mamba conv");
  ops::matmul_backward(ctx, dxn, p.in_proj_w.at(grads), p.in_proj_b.at(grads), g.dxz, xn, p.in_proj_w.at(params), BL,
                       m.d, 2 * di);
  profile_mark("bwd mamba in_proj");
}

#define INSTANTIATE(T)                                                                                               \
  template void plan_mamba_acts<T>(const Context&, Arena&, MambaActs<T>&, const MambaDims&, int64_t, int64_t, bool); \
  template void plan_mamba_grads<T>(const Context&, Arena&, MambaGrads<T>&, const MambaDims&, int64_t, int64_t);     \
  template void mamba_forward<T>(const Context&, T*, const MambaActs<T>&, const T*, const T*, const stat_t<T>*,      \
                                 const MambaParams&, const MambaDims&, const stat_t<T>*, int64_t, int64_t,           \
                                 const LayerState<T>*);                                                              \
  template void mamba_backward<T>(const Context&, T*, grad_t<T>*, const T*, const MambaActs<T>&, const T*, const T*, \
                                  const stat_t<T>*, const MambaParams&, const MambaDims&, const stat_t<T>*, int64_t, \
                                  int64_t, const MambaGrads<T>&, const T*);
INSTANTIATE(float)
INSTANTIATE(double)
#if SAMBALM_HAVE_CUDA
INSTANTIATE(bf16)
#endif

}  // namespace sambalm
