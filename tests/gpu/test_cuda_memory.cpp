// Device memory of the CUDA backend: a planned arena is zero when arena_on returns and its zero fill
// is ordered before what the context's stream does next. The backend's stream is non-blocking, so
// work on the legacy default stream (stream 0) does not order against it; a zero fill queued there
// could land after the first upload into the arena. The test holds the legacy stream with a slow
// host function, so such a late fill would surely come after the upload and show as zeros.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "gpu_testing.h"
#include "ops/memory_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

void CUDART_CB hold_legacy_stream(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }

TEST(CudaMemory, ArenaZeroFillIsOrderedBeforeTheFirstUpload) {
  SAMBALM_REQUIRE_GPU();
  const Context& ctx = gpu();
  ASSERT_EQ(cudaLaunchHostFunc(cudaStreamLegacy, hold_legacy_stream, nullptr), cudaSuccess);
  const int64_t n = 4099;
  Arena arena = ops::arena_on(ctx, sizeof(float) * n + 1024);
  float* p = arena.take<float>(n);
  // Zero on return, before anything else ran on the context's stream.
  std::vector<float> got(n, -1.f);
  ops::download(ctx, got.data(), p, sizeof(float) * n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], 0.f) << "element " << i << " of a fresh arena";
  const std::vector<float> host = random_vector(n, 7);
  ops::upload(ctx, p, host.data(), sizeof(float) * n);
  // Everything on every stream of the device is done: a fill still queued elsewhere has run by now.
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ops::download(ctx, got.data(), p, sizeof(float) * n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], host[i]) << "element " << i << " after the upload";
}

// Mirror (an arena and an upload) keeps the host values.
TEST(CudaMemory, MirrorKeepsItsUploadWhileTheLegacyStreamIsBusy) {
  SAMBALM_REQUIRE_GPU();
  const Context& ctx = gpu();
  ASSERT_EQ(cudaLaunchHostFunc(cudaStreamLegacy, hold_legacy_stream, nullptr), cudaSuccess);
  std::vector<float> host = random_vector(777, 11);
  const std::vector<float> want = host;
  ops::Mirror<float> m(ctx, host.data(), static_cast<int64_t>(host.size()));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::fill(host.begin(), host.end(), 0.f);
  m.pull();
  EXPECT_EQ(host, want);
}

}  // namespace
}  // namespace sambalm
