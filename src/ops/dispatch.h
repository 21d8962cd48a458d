// How an op call reaches a backend. Each op in dense_ops.h / mamba_ops.h / ... is an inline function
// taking the backend Context first; SAMBALM_OP_DISPATCH sends it to the body of the context's device:
// ops::cpu::<op> (src/ops/cpu/, declared in cpu/cpu_ops.h) or, when built with the CUDA backend,
// ops::cuda::<op> (src/ops/cuda/, which also receives the context for its stream and handle).
// A backend adds files, not code paths: the model code calls ops::<op>(ctx, ...) only.
#pragma once

#include <type_traits>

#include "core/bf16.h"
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

// Whether any argument is a pointer to bf16: the CPU's op templates are declared for any T but
// instantiated for float and double only, so a bf16 call must not reach them.
template <typename... A>
struct type_list {};
template <typename... A>
type_list<std::remove_cv_t<std::remove_pointer_t<std::decay_t<A>>>...> arg_types(A&&...);  // decltype only
template <typename L>
inline constexpr bool has_bf16 = false;
template <typename... A>
inline constexpr bool has_bf16<type_list<A...>> = (std::is_same_v<A, bf16> || ...);

}  // namespace sambalm::ops

// The CPU computes in one precision (float or double): an instantiation whose arguments differ in
// element type (a narrower compute type beside fp32 statistics, core/precision.h) has no CPU body.
#define SAMBALM_OP_CPU(ctx, op, ...)                                                               \
  if ((ctx).device == ::sambalm::Device::CPU) {                                                    \
    if constexpr (!::sambalm::ops::has_bf16<decltype(::sambalm::ops::arg_types(__VA_ARGS__))> &&   \
                  requires { cpu::op(__VA_ARGS__); })                                              \
      return cpu::op(__VA_ARGS__);                                                                 \
    else                                                                                           \
      ::sambalm::ops::no_backend(ctx, #op);                                                        \
  }
// The CUDA bodies are overloads for the element types the GPU computes in (float for --precision
// fp32, bf16 beside fp32 statistics); an op or a type without a CUDA body yet fails at run time with
// the op's name rather than at compile time, so bodies can land one op at a time.
#if SAMBALM_HAVE_CUDA
#define SAMBALM_OP_DISPATCH(ctx, op, ...)                   \
  do {                                                      \
    SAMBALM_OP_CPU(ctx, op, __VA_ARGS__)                    \
    if constexpr (requires { cuda::op(ctx, __VA_ARGS__); }) \
      return cuda::op(ctx, __VA_ARGS__);                    \
    else                                                    \
      ::sambalm::ops::no_backend(ctx, #op);                 \
  } while (0)
#else
#define SAMBALM_OP_DISPATCH(ctx, op, ...) \
  do {                                    \
    SAMBALM_OP_CPU(ctx, op, __VA_ARGS__)  \
    ::sambalm::ops::no_backend(ctx, #op); \
  } while (0)
#endif
