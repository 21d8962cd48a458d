#include "ops/device.h"

#include <charconv>

#include "core/error.h"
#if SAMBALM_HAVE_CUDA
#include "ops/cuda/runtime.h"
#else
namespace sambalm::ops::cuda {
class CudaBackend {};  // never made in a build without the backend
}  // namespace sambalm::ops::cuda
#endif

namespace sambalm {

DeviceSpec parse_device(const std::string& text, const std::string& option) {
  if (text == "cpu") return {Device::CPU, 0};
  if (text == "auto") return cuda_available() ? DeviceSpec{Device::CUDA, 0} : DeviceSpec{Device::CPU, 0};
  if (text == "cuda") return {Device::CUDA, 0};
  if (text.rfind("cuda:", 0) == 0) {
    const char* first = text.data() + 5;
    const char* last = text.data() + text.size();
    int index = -1;
    const auto [end, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && end == last && first != last && index >= 0) return {Device::CUDA, index};
  }
  fail("{} {}: expected cpu, cuda, cuda:N (N = 0, 1, ...) or auto", option, text);
}

Precision parse_precision(const std::string& text, Device device, const std::string& option) {
  if (text == "fp32") return Precision::FP32;
  if (text == "auto") return device == Device::CUDA ? Precision::BF16 : Precision::FP32;
  if (text == "bf16") {
    SAMBALM_CHECK(device == Device::CUDA,
                  "{} bf16: the CPU computes in fp32 only; pass {} fp32 (or auto), or --device cuda for bf16 mixed "
                  "precision on a GPU",
                  option, option);
    return Precision::BF16;
  }
  fail("{} {}: expected bf16, fp32 or auto", option, text);
}

const char* precision_name(Precision p) { return p == Precision::BF16 ? "bf16" : "fp32"; }

int cuda_device_count() {
#if SAMBALM_HAVE_CUDA
  return ops::cuda::device_count();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

Backend::Backend(const DeviceSpec& spec) : spec_(spec) {
  if (spec.device == Device::CPU) return;
#if SAMBALM_HAVE_CUDA
  cuda_ = std::make_unique<ops::cuda::CudaBackend>(spec.index);
#else
  fail("--device cuda:{}: this sambalm was built without the CUDA backend (rebuild where nvcc is installed, or "
       "with -DSAMBALM_CUDA=ON); use --device cpu",
       spec.index);
#endif
}

Backend::~Backend() = default;

const Context& Backend::context() const {
#if SAMBALM_HAVE_CUDA
  if (cuda_) return cuda_->context();
#endif
  return cpu_context();
}

std::string Backend::describe() const {
#if SAMBALM_HAVE_CUDA
  if (cuda_) return fmt::format("cuda:{} ({})", spec_.index, ops::cuda::device_name(spec_.index));
#endif
  return "cpu";
}

}  // namespace sambalm
