#include "ops/cuda/runtime.h"

#include <fmt/format.h>

#include "core/error.h"

#include "ops/cuda/check.cuh"

namespace sambalm::ops::cuda {

void raise_cuda_error(int code, const char* call, const char* file, int line) {
  fail("CUDA: {} failed at {}:{}: {}", call, file, line, cudaGetErrorString(static_cast<cudaError_t>(code)));
}

void raise_cublas_error(int status, const char* call, const char* file, int line) {
  fail("cuBLASLt: {} failed at {}:{}: status {}", call, file, line, status);
}

namespace {
// cuBLASLt's workspace: 32 MiB is what its heuristics want for the largest split-K GEMMs on Hopper.
constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

void set_device(int index) { SAMBALM_CUDA_CHECK(cudaSetDevice(index)); }
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return cudaGetErrorString(err);
  }
  return n == 0 ? "no CUDA-capable device" : "";
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  SAMBALM_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return fmt::format("{} (sm_{}{}, {} SMs, {:.1f} GiB)", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                     static_cast<double>(prop.totalGlobalMem) / (1u << 30));
}

MemoryInfo memory_info(int index) {
  set_device(index);
  MemoryInfo m;
  SAMBALM_CUDA_CHECK(cudaMemGetInfo(&m.free_bytes, &m.total_bytes));
  return m;
}

void* device_alloc(size_t bytes, int index) {
  if (bytes == 0) return nullptr;
  set_device(index);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    fail("cuda:{}: cannot allocate {:.2f} GiB of GPU memory ({:.2f} GiB free of {:.2f} GiB): {}; use a smaller "
         "batch or sequence length",
         index, static_cast<double>(bytes) / (1u << 30), static_cast<double>(free_b) / (1u << 30),
         static_cast<double>(total_b) / (1u << 30), cudaGetErrorString(err));
  }
  return p;
}

void device_free(void* p) {
  if (p) (void)cudaFree(p);
}

Arena device_arena(const Context& ctx, size_t bytes) {
  auto* base = static_cast<std::byte*>(device_alloc(bytes + Arena::kAlign, ctx.device_index));
  // The zero fill goes on the context's stream, never through cudaMemset: that queues on the legacy
  // default stream, which does not order against our non-blocking stream, so the fill could land
  // after the first uploads and kernels had written the arena (e.g. zero the training tokens just
  // uploaded: the likely cause of the Mamba fixtures failing under compute-sanitizer only).
  // The wait makes the arena zero on return whatever stream touches it next.
  if (base) {
    SAMBALM_CUDA_CHECK(cudaMemsetAsync(base, 0, bytes + Arena::kAlign, stream_of(ctx)));
    SAMBALM_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  }
  return Arena::adopt(base, bytes, &device_free);
}

void copy_to_device(const Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SAMBALM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_of(ctx)));
  SAMBALM_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
}

void copy_to_host(const Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SAMBALM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_of(ctx)));
  SAMBALM_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
}

void copy_on_device(const Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SAMBALM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_of(ctx)));
}

void memset_zero(const Context& ctx, void* dst, size_t bytes) {
  if (bytes == 0) return;
  SAMBALM_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_of(ctx)));
}

void synchronize(const Context& ctx) { SAMBALM_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx))); }

CudaBackend::CudaBackend(int index) {
  const int n = device_count();
  if (n == 0) fail("--device cuda:{}: no CUDA GPU is available ({}); use --device cpu", index, no_device_reason());
  if (index < 0 || index >= n)
    fail("--device cuda:{}: this machine has {} GPU{} (cuda:0{}); pick one of those", index, n, n == 1 ? "" : "s",
         n == 1 ? std::string() : fmt::format("..cuda:{}", n - 1));
  set_device(index);
  ctx_.device = Device::CUDA;
  ctx_.device_index = index;
  cudaStream_t stream = nullptr;
  SAMBALM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ctx_.stream = stream;
  cublasLtHandle_t lt = nullptr;
  SAMBALM_CUBLAS_CHECK(cublasLtCreate(&lt));
  ctx_.blas = lt;
  ctx_.blas_workspace = device_alloc(kBlasWorkspaceBytes, index);
  ctx_.blas_workspace_bytes = kBlasWorkspaceBytes;
}

CudaBackend::~CudaBackend() {
  if (ctx_.stream) (void)cudaStreamSynchronize(stream_of(ctx_));
  device_free(ctx_.blas_workspace);
  if (ctx_.blas) (void)cublasLtDestroy(static_cast<cublasLtHandle_t>(ctx_.blas));
  if (ctx_.stream) (void)cudaStreamDestroy(stream_of(ctx_));
}

}  // namespace sambalm::ops::cuda
