// Work queued on a context, captured once and replayed with one launch: on a CUDA GPU a CUDA graph of
// the kernels, copies and fills that `work` queues, with the arguments (device pointers included) they
// had at capture. A decode step replays its graph instead of launching a few hundred small kernels one
// by one; it stays correct while every buffer the work touches keeps its address and the values that
// change between steps (tokens, slots, positions) are read from device memory.
#pragma once

#include <functional>

#include "core/context.h"

namespace sambalm::ops {

class CapturedWork {
 public:
  CapturedWork() = default;
  ~CapturedWork();
  CapturedWork(CapturedWork&& o) noexcept : ctx_(o.ctx_), exec_(o.exec_) { o.exec_ = nullptr; }
  CapturedWork& operator=(CapturedWork&& o) noexcept;
  CapturedWork(const CapturedWork&) = delete;
  CapturedWork& operator=(const CapturedWork&) = delete;

  // Whether work on this context can be captured (a CUDA GPU of a build with the CUDA backend).
  static bool supported(const Context& ctx);
  // Records `work` (nothing of it runs now) in place of what was captured before. Error when the
  // context cannot capture or the work does something a capture cannot hold (a host synchronisation).
  void capture(const Context& ctx, const std::function<void()>& work);
  // Queues the captured work on the context's stream (Error when nothing was captured).
  void replay() const;
  bool empty() const { return exec_ == nullptr; }
  void reset();

 private:
  Context ctx_;
  void* exec_ = nullptr;
};

}  // namespace sambalm::ops
