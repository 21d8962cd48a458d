#include "ops/cuda/graph.h"

#include <cuda_runtime.h>

#include "ops/cuda/check.cuh"

namespace sambalm::ops::cuda {

void* graph_capture(const Context& ctx, const std::function<void()>& work) {
  cudaStream_t s = stream_of(ctx);
  // Thread-local mode: another thread's unsafe calls (a cudaMalloc of the state pool, say) are not
  // this capture's business; this thread's are, and fail the capture instead of running uncaptured.
  SAMBALM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    work();
  } catch (...) {
    (void)cudaStreamEndCapture(s, &graph);
    if (graph) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();  // the capture's error is reported by the exception
    throw;
  }
  SAMBALM_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  SAMBALM_CUDA_CHECK(err);
  return exec;
}

void graph_launch(const Context& ctx, void* exec) {
  SAMBALM_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream_of(ctx)));
}

void graph_destroy(void* exec) {
  if (exec) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));  // at teardown: not actionable
}

}  // namespace sambalm::ops::cuda
