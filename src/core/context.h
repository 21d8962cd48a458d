// Backend context: what travels with every op call besides the op's own arguments — the device the
// buffers live on, the stream the op is queued on, the backend's library handle (cuBLASLt on the
// GPU) and the scratch arena for temporaries. On the CPU the stream and handle are empty and ops run
// synchronously on the calling thread's OpenMP pool.
#pragma once

#include <cstddef>
#include <string>

namespace sambalm {

class Arena;

enum class Device { CPU, CUDA };

struct Context {
  Device device = Device::CPU;
  int device_index = 0;      // which GPU (CUDA)
  void* stream = nullptr;    // cudaStream_t (CUDA); nullptr = synchronous (CPU)
  void* blas = nullptr;      // cublasLtHandle_t (CUDA); unused on the CPU (OpenBLAS needs none)
  void* blas_workspace = nullptr;  // device memory cuBLASLt may use for split-K and the like (CUDA)
  size_t blas_workspace_bytes = 0;
  Arena* scratch = nullptr;  // temporaries of ops that need more than their arguments

  std::string name() const;
};

// The process-wide CPU context (no scratch arena): what code that does not plan its own uses.
const Context& cpu_context();

}  // namespace sambalm
