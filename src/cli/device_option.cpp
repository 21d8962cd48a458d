#include "cli/device_option.h"

#include <fmt/format.h>

#include "core/arena.h"
#include "core/error.h"
#include "infer/device_decode_model.h"
#include "ops/memory_ops.h"
#include "ops/optim_ops.h"

namespace sambalm::cli {

void add_device_options(CLI::App* sub, std::string& device, std::string& dtype) {
  device = "auto";
  dtype = "auto";
  sub->add_option("--device", device,
                  "cpu, cuda, cuda:N, or auto (the first GPU when this build has the CUDA backend and one is "
                  "visible, else the CPU; the CPU also when an option that runs on the CPU only is given)")
      ->capture_default_str();
  sub->add_option("--dtype", dtype,
                  "Compute precision on the GPU: bf16 (bf16 weights, activations and GEMMs; fp32 residual stream, "
                  "statistics and scan states), fp32, or auto (bf16 on a GPU, fp32 on the CPU). The CPU computes "
                  "in fp32 only: its packed weight formats are --weights-dtype, a separate option")
      ->check(CLI::IsMember({"bf16", "fp32", "auto"}))
      ->capture_default_str();
}

void add_graphs_option(CLI::App* sub, std::string& graphs) {
  graphs = "on";
  sub->add_option("--cuda-graphs", graphs,
                  "GPU decoding: on (each batch size's decode step is captured once as a CUDA graph and replayed: one "
                  "launch a step instead of one a kernel) or off; no effect on the CPU")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
}

InferDevice resolve_infer_device(const std::string& device, const std::string& dtype,
                                 const std::vector<CpuOnly>& cpu_only, const std::string& dtype_option) {
  InferDevice r;
  if (device == "auto")
    r.spec = cpu_only.empty() ? parse_device("auto") : DeviceSpec{Device::CPU, 0};
  else
    r.spec = parse_device(device);
  if (r.cuda() && !cpu_only.empty())
    fail("--device {}: {} does not run on the GPU yet ({}); use --device cpu", device, cpu_only[0].what,
         cpu_only[0].why);
  r.precision = parse_precision(dtype, r.spec.device, dtype_option);
  return r;
}

struct GpuDecoder::Impl {
  std::unique_ptr<ops::Mirror<float>> master;
  Arena work_arena;
  std::unique_ptr<DeviceDecodeModel<float>> f32;
#if SAMBALM_HAVE_CUDA
  std::unique_ptr<DeviceDecodeModel<bf16>> b16;
#endif
  std::unique_ptr<DecodeEngine> engine;  // declared last: goes first
};

GpuDecoder::GpuDecoder(const InferDevice& where, LoadedModel& lm, const DecodeOptions& opt)
    : backend_(where.spec), precision_(where.precision), impl_(std::make_unique<Impl>()) {
  SAMBALM_CHECK(!lm.params.packed(), "internal: packed weights reached the GPU decoder");
  const Context& ctx = backend_.context();
  const int64_t n = static_cast<int64_t>(lm.params.size());
  impl_->master = std::make_unique<ops::Mirror<float>>(ctx, lm.params.data(), n);
  param_bytes_ = 4 * n;
  if (precision_ == Precision::FP32) {
    impl_->f32 = std::make_unique<DeviceDecodeModel<float>>(lm.config, lm.params.entries(), impl_->master->get(),
                                                            nullptr, ctx, opt);
    impl_->engine = std::make_unique<DecodeEngineOf<DeviceDecodeModel<float>>>(*impl_->f32);
  } else {
#if SAMBALM_HAVE_CUDA
    // The bf16 working copy beside the fp32 master (the parameters that stay fp32 are read from it).
    Arena count;
    count.take<bf16>(n);
    impl_->work_arena = ops::arena_on(ctx, count.bytes());
    bf16* work = impl_->work_arena.take<bf16>(n);
    ops::convert(ctx, work, static_cast<const float*>(impl_->master->get()), n);
    param_bytes_ += 2 * n;
    impl_->b16 =
        std::make_unique<DeviceDecodeModel<bf16>>(lm.config, lm.params.entries(), work, impl_->master->get(), ctx, opt);
    impl_->engine = std::make_unique<DecodeEngineOf<DeviceDecodeModel<bf16>>>(*impl_->b16);
#else
    fail("--dtype bf16: this sambalm was built without the CUDA backend");
#endif
  }
  engine_ = impl_->engine.get();
  target_ = decode_state_target(lm.config, lm.params.entries(), lm.params.data(), n, *engine_->layout());
}

GpuDecoder::~GpuDecoder() = default;

std::string GpuDecoder::describe() const {
  return fmt::format("{}, {}", backend_.describe(), precision_name(precision_));
}

}  // namespace sambalm::cli
