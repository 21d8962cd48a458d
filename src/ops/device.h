// Which backend an op runs on, as the user names it (--device): "cpu", "cuda" (= cuda:0), "cuda:N",
// or "auto" (cuda:0 when this build has the CUDA backend and a GPU is visible, else cpu). A Backend
// opens the device once and owns what its contexts need (on a GPU: the stream, the cuBLASLt handle).
#pragma once

#include <memory>
#include <string>

#include "core/context.h"

namespace sambalm {

namespace ops::cuda {
class CudaBackend;
}

struct DeviceSpec {
  Device device = Device::CPU;
  int index = 0;
};

// Parses a --device value; throws Error naming `option` and the accepted forms.
DeviceSpec parse_device(const std::string& text, const std::string& option = "--device");

// What a run computes in (--precision, DESIGN.md "Numerics"): fp32 throughout, or bf16 mixed precision
// on a GPU (bf16 weights, activations and GEMM operands; fp32 master weights, optimizer, gradients,
// residual stream and statistics).
enum class Precision { FP32, BF16 };
// "fp32", "bf16", or "auto" (bf16 on a GPU, fp32 on the CPU) for a run on `device`; throws Error naming
// `option` for another value, and for bf16 on the CPU (which computes in fp32 only).
Precision parse_precision(const std::string& text, Device device, const std::string& option = "--precision");
const char* precision_name(Precision p);  // "fp32", "bf16"
// True when this build has the CUDA backend and at least one GPU is visible.
bool cuda_available();
// Number of visible GPUs (0 without the CUDA backend).
int cuda_device_count();

class Backend {
 public:
  // Opens the device; throws Error saying what to change when it cannot (no CUDA backend in this
  // build, no GPU, an index out of range).
  explicit Backend(const DeviceSpec& spec);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const Context& context() const;
  // "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.2 GiB)".
  std::string describe() const;

 private:
  DeviceSpec spec_;
  std::unique_ptr<ops::cuda::CudaBackend> cuda_;
};

}  // namespace sambalm
