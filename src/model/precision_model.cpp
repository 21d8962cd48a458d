#include "model/precision_model.h"

#include <type_traits>

#include "core/arena.h"
#include "core/bf16.h"
#include "core/error.h"
#include "model/model.h"
#include "ops/memory_ops.h"
#include "ops/optim_ops.h"

namespace sambalm {
namespace {

template <typename T>
class ModelAt final : public PrecisionModel {
  static constexpr bool kFp32 = std::is_same_v<T, float>;

 public:
  ModelAt(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const Context& ctx, const float* master,
          int64_t n)
      : model_(cfg, entries, ctx), master_(master), n_(n), V_(cfg.padded_vocab_size) {
    if constexpr (!kFp32) {
      const size_t bytes = (sizeof(T) * static_cast<size_t>(n) + Arena::kAlign - 1) / Arena::kAlign * Arena::kAlign;
      work_arena_ = ops::arena_on(ctx, bytes);
      work_ = work_arena_.template take<T>(n);
    }
    weights_changed();
  }

  Precision precision() const override { return kFp32 ? Precision::FP32 : Precision::BF16; }
  double forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t Tn, double loss_scale) override {
    return model_.forward(working(), master_, tokens, targets, B, Tn, loss_scale);
  }
  void backward(float* grads) override { model_.backward(working(), master_, grads); }
  void weights_changed() override {
    if constexpr (!kFp32) ops::convert(model_.context(), work_, master_, n_);
  }
  const float* logits_on_host(std::vector<float>& host) const override {
    const Context& ctx = model_.context();
    const size_t n = static_cast<size_t>(model_.batch() * model_.seq_len() * V_);
    if constexpr (kFp32) {
      if (ctx.device == Device::CPU) return model_.logits();
      host.resize(n);
      ops::download(ctx, host.data(), model_.logits(), sizeof(float) * n);
    } else {
      std::vector<T> narrow(n);
      ops::download(ctx, narrow.data(), model_.logits(), sizeof(T) * n);
      host.resize(n);
      for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(narrow[i]);
    }
    return host.data();
  }
  const float* block_output(int64_t block) const override { return model_.block_output(block); }

 private:
  const T* working() const {
    if constexpr (kFp32)
      return master_;
    else
      return work_;
  }

  Model<T> model_;
  const float* master_;
  int64_t n_, V_;
  Arena work_arena_;
  T* work_ = nullptr;
};

}  // namespace

std::unique_ptr<PrecisionModel> make_precision_model(Precision p, const ModelConfig& cfg,
                                                     const std::vector<ParamEntry>& entries, const Context& ctx,
                                                     const float* master, int64_t n_params) {
  if (p == Precision::FP32) return std::make_unique<ModelAt<float>>(cfg, entries, ctx, master, n_params);
  SAMBALM_CHECK(ctx.device == Device::CUDA, "--precision bf16: the CPU computes in fp32 only; pass --precision fp32");
#if SAMBALM_HAVE_CUDA
  return std::make_unique<ModelAt<bf16>>(cfg, entries, ctx, master, n_params);
#else
  fail("--precision bf16: this build has no CUDA backend");
#endif
}

}  // namespace sambalm
