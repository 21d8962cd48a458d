// Error checks for CUDA runtime and cuBLASLt calls inside the backend: a failure throws
// sambalm::Error naming the call, the file and line and the library's own message. Kept free of
// fmt (which nvcc's front end cannot compile): the message is built in runtime.cpp.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/context.h"

namespace sambalm::ops::cuda {
[[noreturn]] void raise_cuda_error(int code, const char* call, const char* file, int line);
[[noreturn]] void raise_cublas_error(int status, const char* call, const char* file, int line);
inline cudaStream_t stream_of(const Context& ctx) { return static_cast<cudaStream_t>(ctx.stream); }
}  // namespace sambalm::ops::cuda

#define SAMBALM_CUDA_CHECK(call)                                                                 \
  do {                                                                                           \
    const cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess) ::sambalm::ops::cuda::raise_cuda_error(err_, #call, __FILE__, __LINE__); \
  } while (0)

#define SAMBALM_CUBLAS_CHECK(call)                                                                    \
  do {                                                                                                \
    const cublasStatus_t st_ = (call);                                                                \
    if (st_ != CUBLAS_STATUS_SUCCESS) ::sambalm::ops::cuda::raise_cublas_error(st_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad launch configuration shows here, not at the next synchronisation.
#define SAMBALM_CUDA_LAUNCH_CHECK() SAMBALM_CUDA_CHECK(cudaGetLastError())
