// The model at a run's precision (ops/device.h Precision), behind one interface for the trainer and
// `sambalm forward`. The caller owns the fp32 master parameters (ParamStore layout, in the context's
// memory) and the fp32 gradient buffer; this owns the model and, in bf16, the working copy:
//   fp32: Model<float> reads the master parameters themselves.
//   bf16: Model<bf16> reads a bf16 working copy of them (weights and GEMM operands) beside the master
//         (the parameters that stay fp32: embedding, norms, A_log, D, dt bias), and adds fp32 gradients.
//         weights_changed() refreshes the copy from the master (after each optimizer update).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/context.h"
#include "model/config.h"
#include "model/params.h"
#include "ops/device.h"

namespace sambalm {

class PrecisionModel {
 public:
  virtual ~PrecisionModel() = default;
  virtual Precision precision() const = 0;
  // Model::forward on tokens [B, Tn] (targets may be nullptr: no loss, NaN returned).
  virtual double forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t Tn,
                         double loss_scale = 1.0) = 0;
  // Adds d(loss * loss_scale)/d(params) into grads (fp32, the master's layout, the context's memory).
  virtual void backward(float* grads) = 0;
  // The master parameters changed: refresh what the model reads (the bf16 working copy).
  virtual void weights_changed() = 0;
  // The last forward's logits [B*Tn, padded_vocab] as fp32 on the host: the model's own buffer on the
  // CPU, else a copy into `host`.
  virtual const float* logits_on_host(std::vector<float>& host) const = 0;
  // The residual after block i, [B*Tn, d], fp32 in the context's memory.
  virtual const float* block_output(int64_t block) const = 0;
};

// master: n_params fp32 values in ctx's memory, alive as long as the model. bf16 needs a GPU context
// and a build with the CUDA backend (else Error).
std::unique_ptr<PrecisionModel> make_precision_model(Precision p, const ModelConfig& cfg,
                                                     const std::vector<ParamEntry>& entries, const Context& ctx,
                                                     const float* master, int64_t n_params);

}  // namespace sambalm
