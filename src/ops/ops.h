// Every op of the engine, declared once. CPU bodies live in src/ops/cpu/, CUDA bodies in src/ops/cuda/. Conventions, the same for every op (llm.c style):
//   * The first argument is the backend Context (core/context.h): device, stream, BLAS handle, scratch.
//     ops::<op>(ctx, ...) sends the call to that device's body (dispatch.h).
//   * Ops take raw pointers plus sizes; tensors are row-major and contiguous unless a stride is
//     given. Activations are token-major: [B, T, C] with C fastest.
//   * Ops never allocate: the caller passes every output and scratch buffer.
//   * Forward ops overwrite their outputs. Backward ops ADD (+=) into every gradient buffer they
//     are given (inputs and parameters alike); callers zero gradients once per step. A gradient
//     pointer may be nullptr when that gradient is not needed.
//   * Templates are instantiated for float (compute) and double (finite-difference checks) on the CPU;
//     for float and bf16 (beside fp32 statistics) on the GPU.
//   * Each hot op has a simple reference (`*_ref`, the test oracle) where the fast one is not
//     obviously correct.
#pragma once

#include "ops/dense_ops.h"
#include "ops/mamba_ops.h"
#include "ops/memory_ops.h"
#include "ops/optim_ops.h"
