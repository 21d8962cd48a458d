// How an op call reaches a backend. Each op in dense_ops.h / mamba_ops.h / ... is an inline function
// taking the backend Context first; SAMBALM_OP_DISPATCH sends it to the body of the context's device:
// ops::cpu::<op> (src/ops/cpu/, declared in cpu/cpu_ops.h) or, when built with the CUDA backend,
// ops::cuda::<op> (src/ops/cuda/, which also receives the context for its stream and handle).
// A backend adds files, not code paths: the model code calls ops::<op>(ctx, ...) only.
#pragma once

#include "core/context.h"
#include "core/error.h"
#include "ops/cpu/cpu_ops.h"
#if SAMBALM_HAVE_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace sambalm::ops {

[[noreturn]] inline void no_backend(const Context& ctx, const char* op) {
  fail("op {}: no {} body in this build", op, ctx.name());
}

}  // namespace sambalm::ops

// The CPU computes in one precision (float or double): an instantiation whose arguments differ in
// element type (a narrower compute type beside fp32 statistics, core/precision.h) has no CPU body.
#define SAMBALM_OP_CPU(ctx, op, ...)                  \
  if ((ctx).device == ::sambalm::Device::CPU) {       \
    if constexpr (requires { cpu::op(__VA_ARGS__); }) \
      return cpu::op(__VA_ARGS__);                    \
    else                                              \
      ::sambalm::ops::no_backend(ctx, #op);           \
  }
#if SAMBALM_HAVE_CUDA
#define SAMBALM_OP_DISPATCH(ctx, op, ...) \
  do {                                    \
    SAMBALM_OP_CPU(ctx, op, __VA_ARGS__)  \
    return cuda::op(ctx, __VA_ARGS__);    \
  } while (0)
#else
#define SAMBALM_OP_DISPATCH(ctx, op, ...) \
  do {                                    \
    SAMBALM_OP_CPU(ctx, op, __VA_ARGS__)  \
    ::sambalm::ops::no_backend(ctx, #op); \
  } while (0)
#endif
