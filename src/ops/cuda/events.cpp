#include "ops/cuda/events.h"

#include <cuda_runtime.h>

#include "ops/cuda/check.cuh"

namespace sambalm::ops::cuda {

void* event_create() {
  cudaEvent_t e = nullptr;
  SAMBALM_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void event_destroy(void* event) {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));  // at teardown: errors are not actionable
}

void event_record(void* event, void* stream) {
  SAMBALM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

void event_synchronize(void* event) { SAMBALM_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event))); }

float event_elapsed_ms(void* start, void* stop) {
  float ms = 0;
  SAMBALM_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
  return ms;
}

}  // namespace sambalm::ops::cuda
