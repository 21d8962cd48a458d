// CUDA graphs for the decode step (ops/captured_work.h): opaque handles so that code outside the CUDA
// backend needs no CUDA header. C++17, no fmt.
#pragma once

#include <functional>

#include "core/context.h"

namespace sambalm::ops::cuda {

// Runs `work` with the context's stream in capture mode (the kernels, copies and fills it queues are
// recorded, not run) and returns the instantiated graph (cudaGraphExec_t). Throws sambalm::Error when
// the capture or the instantiation fails (e.g. `work` synchronised the stream); the stream is then out
// of capture mode again and nothing of `work` has run.
void* graph_capture(const Context& ctx, const std::function<void()>& work);
// Queues the whole graph on the context's stream.
void graph_launch(const Context& ctx, void* exec);
void graph_destroy(void* exec);  // nullptr: nothing

}  // namespace sambalm::ops::cuda
