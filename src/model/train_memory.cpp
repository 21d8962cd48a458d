#include "model/train_memory.h"

#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "model/memory_estimate.h"
#include "model/model.h"
#include "model/params.h"

namespace sambalm {

namespace {

std::vector<ParamEntry> entries_of(const ModelConfig& cfg) {
  std::vector<ParamEntry> entries;
  size_t offset = 0;
  for (const auto& s : param_specs(cfg)) {
    entries.push_back({s.name, s.shape, offset});
    offset += static_cast<size_t>(shape_numel(s.shape));
  }
  return entries;
}

template <typename T>
int64_t planned_bytes(const ModelConfig& cfg, const Context& ctx, int64_t B, int64_t Tn) {
  Model<T> model(cfg, entries_of(cfg), ctx);  // allocates nothing until a forward
  return static_cast<int64_t>(model.plan_train_bytes(B, Tn));
}

}  // namespace

TrainMemory training_memory(const ModelConfig& cfg, Device device, Precision precision, int64_t batch,
                            int64_t seq_len) {
  // The fp32 formula first: its overflow checks refuse a shape too large to count in bytes, so the
  // plan below (size_t arithmetic) only ever sees sizes that fit.
  const MemoryEstimate est = estimate_memory(cfg, batch, seq_len);
  TrainMemory m;
  m.device = device;
  m.precision = precision;
  m.batch = est.batch;
  m.seq_len = est.seq_len;
  SAMBALM_CHECK(precision == Precision::FP32 || device == Device::CUDA,
                "bf16 mixed precision runs on a GPU only (the CPU computes in fp32): pass --device cuda or "
                "--precision fp32");
  Context ctx;  // only its device matters: planning sizes buffers, it opens nothing
  ctx.device = device;
#if !SAMBALM_HAVE_CUDA
  SAMBALM_CHECK(device == Device::CPU,
                "the GPU's training memory comes from the CUDA backend's buffer plan, and this build has no CUDA "
                "backend: pass --device cpu, or use a build with CUDA");
#endif
  const int64_t P = est.params;
  m.master = 4 * P;
  m.grads = 4 * P;
  m.adam = 8 * P;
  if (precision == Precision::FP32) {
    m.activations = planned_bytes<float>(cfg, ctx, m.batch, m.seq_len);
  } else {
#if SAMBALM_HAVE_CUDA
    m.working = (2 * P + int64_t(Arena::kAlign) - 1) / int64_t(Arena::kAlign) * int64_t(Arena::kAlign);
    m.activations = planned_bytes<bf16>(cfg, ctx, m.batch, m.seq_len);
#endif
  }
  m.total = m.master + m.working + m.grads + m.adam + m.activations;
  return m;
}

}  // namespace sambalm
