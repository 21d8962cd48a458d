#include "ops/captured_work.h"

#include "core/error.h"
#if SAMBALM_HAVE_CUDA
#include "ops/cuda/graph.h"
#endif

namespace sambalm::ops {

CapturedWork::~CapturedWork() { reset(); }

CapturedWork& CapturedWork::operator=(CapturedWork&& o) noexcept {
  if (this != &o) {
    reset();
    ctx_ = o.ctx_;
    exec_ = o.exec_;
    o.exec_ = nullptr;
  }
  return *this;
}

bool CapturedWork::supported(const Context& ctx) {
#if SAMBALM_HAVE_CUDA
  return ctx.device == Device::CUDA;
#else
  (void)ctx;
  return false;
#endif
}

void CapturedWork::capture(const Context& ctx, const std::function<void()>& work) {
  SAMBALM_CHECK(supported(ctx), "captured work: {} cannot capture work (CUDA graphs need a CUDA GPU)", ctx.name());
  reset();
#if SAMBALM_HAVE_CUDA
  exec_ = cuda::graph_capture(ctx, work);
  ctx_ = ctx;
#else
  (void)work;
#endif
}

void CapturedWork::replay() const {
  SAMBALM_CHECK(exec_ != nullptr, "captured work: nothing was captured");
#if SAMBALM_HAVE_CUDA
  cuda::graph_launch(ctx_, exec_);
#endif
}

void CapturedWork::reset() {
#if SAMBALM_HAVE_CUDA
  cuda::graph_destroy(exec_);
#endif
  exec_ = nullptr;
}

}  // namespace sambalm::ops
