// The NCCL backend of Communicator (train/communicator.h): one rank per GPU, the collectives on the
// GPU's buffers. Built with the CUDA backend; NCCL itself is loaded when a run asks for it
// (dlopen of libnccl.so.2, or the file SAMBALM_NCCL_LIBRARY names), so the program builds and runs
// without NCCL installed and says so clearly only when a distributed GPU run needs it.
//
// Rendezvous (the 128-byte id every rank passes to ncclCommInitRank, made by rank 0):
//   one rank                 made here
//   torchrun's variables     rank 0 listens on MASTER_PORT and sends the id to each rank that
//                            connects to MASTER_ADDR:MASTER_PORT (within --dist-timeout)
//   mpirun / srun            the same TCP exchange: it needs MASTER_ADDR and MASTER_PORT set too
//
// Buffers: the trainer hands device pointers (gradients, weights) and host pointers (a loss, a flag,
// the start-up weights); host data goes through a device staging buffer in chunks.
// Ordering: before a collective the device is synchronised (everything the compute stream queued is
// done), the collective runs on this communicator's own stream, and the host waits for it while
// polling NCCL's asynchronous error and the --dist-timeout bound: a rank that died or hangs makes the
// others abort their communicator and stop with a message naming the collective.
// NVLink multicast (NVLS) is turned off unless the environment says otherwise: NCCL_NVLS_ENABLE=0 is
// set before NCCL is loaded.
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "train/communicator.h"

namespace sambalm {
namespace {

using Clock = std::chrono::steady_clock;

// NCCL's C ABI, the part used here (nccl.h, stable since NCCL 2.0; the values below are its enums).
struct NcclId {
  char internal[128];
};
using NcclComm = struct NcclCommOpaque*;
enum NcclResult : int { kNcclSuccess = 0, kNcclInProgress = 7 };
enum NcclType : int { kNcclUint8 = 1, kNcclFloat32 = 7, kNcclFloat64 = 8 };
enum NcclOp : int { kNcclSum = 0, kNcclMax = 2 };
#if __has_include(<nccl.h>)
}  // namespace
}  // namespace sambalm
#include <nccl.h>
namespace sambalm {
namespace {
// Where the header is at hand, the values above are checked against it.
static_assert(sizeof(ncclUniqueId) == sizeof(NcclId) && ncclSuccess == int(kNcclSuccess) &&
              ncclInProgress == int(kNcclInProgress) && ncclUint8 == int(kNcclUint8) &&
              ncclFloat32 == int(kNcclFloat32) && ncclFloat64 == int(kNcclFloat64) && ncclSum == int(kNcclSum) &&
              ncclMax == int(kNcclMax));
#endif

struct NcclApi {
  void* lib = nullptr;
  int (*get_version)(int*) = nullptr;
  int (*get_unique_id)(NcclId*) = nullptr;
  int (*comm_init_rank)(NcclComm*, int, NcclId, int) = nullptr;
  int (*comm_destroy)(NcclComm) = nullptr;
  int (*comm_abort)(NcclComm) = nullptr;
  int (*comm_get_async_error)(NcclComm, int*) = nullptr;
  const char* (*error_string)(int) = nullptr;
  int (*all_reduce)(const void*, void*, size_t, int, int, NcclComm, cudaStream_t) = nullptr;
  int (*reduce)(const void*, void*, size_t, int, int, int, NcclComm, cudaStream_t) = nullptr;
  int (*broadcast)(const void*, void*, size_t, int, int, NcclComm, cudaStream_t) = nullptr;
  int (*group_start)() = nullptr;
  int (*group_end)() = nullptr;
};

template <typename F>
void bind(void* lib, const char* name, F& fn, const std::string& path) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  SAMBALM_CHECK(fn, "{}: has no symbol {} (not an NCCL library, or one older than 2.4)", path, name);
}

NcclApi load_nccl() {
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);  // before NCCL reads its environment
  const char* explicit_path = std::getenv("SAMBALM_NCCL_LIBRARY");
  std::vector<std::string> tried;
  NcclApi api;
  std::string path;
  for (const char* cand : {explicit_path, "libnccl.so.2", "libnccl.so"}) {
    if (!cand || !*cand) continue;
    api.lib = dlopen(cand, RTLD_NOW | RTLD_LOCAL);
    if (api.lib) {
      path = cand;
      break;
    }
    tried.push_back(std::string(cand) + " (" + dlerror() + ")");
    if (cand == explicit_path) break;  // a path the user named is the only one tried
  }
  if (!api.lib) {
    std::string list;
    for (const auto& t : tried) list += (list.empty() ? "" : "; ") + t;
    fail("distributed training on the GPU needs NCCL, which was not found at run time: {}. Install it (Debian: "
         "libnccl2; it also ships in PyTorch's wheels as site-packages/nvidia/nccl/lib/libnccl.so.2) and point "
         "SAMBALM_NCCL_LIBRARY at the file if it is not on the loader's path",
         list);
  }
  bind(api.lib, "ncclGetVersion", api.get_version, path);
  bind(api.lib, "ncclGetUniqueId", api.get_unique_id, path);
  bind(api.lib, "ncclCommInitRank", api.comm_init_rank, path);
  bind(api.lib, "ncclCommDestroy", api.comm_destroy, path);
  bind(api.lib, "ncclCommAbort", api.comm_abort, path);
  bind(api.lib, "ncclCommGetAsyncError", api.comm_get_async_error, path);
  bind(api.lib, "ncclGetErrorString", api.error_string, path);
  bind(api.lib, "ncclAllReduce", api.all_reduce, path);
  bind(api.lib, "ncclReduce", api.reduce, path);
  bind(api.lib, "ncclBroadcast", api.broadcast, path);
  bind(api.lib, "ncclGroupStart", api.group_start, path);
  bind(api.lib, "ncclGroupEnd", api.group_end, path);
  return api;
}

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("NCCL backend: {}: {}", what, cudaGetErrorString(e));
}

// ---- TCP rendezvous: rank 0 serves the id to the other ranks. ----

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    c += w, n -= size_t(w);
  }
  return true;
}

bool read_all(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = recv(fd, c, n, 0);
    if (r <= 0) return false;
    c += r, n -= size_t(r);
  }
  return true;
}

constexpr uint32_t kHello = 0x53424c4e;  // identifies a rank of this program on the port

void serve_id(const LaunchInfo& li, const NcclId& id, double timeout_s) {
  Fd s;
  s.fd = socket(AF_INET6, SOCK_STREAM, 0);
  bool v6 = s.fd >= 0;
  if (!v6) s.fd = socket(AF_INET, SOCK_STREAM, 0);
  SAMBALM_CHECK(s.fd >= 0, "NCCL rendezvous: socket: {}", std::strerror(errno));
  const int one = 1, zero = 0;
  setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    setsockopt(s.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(uint16_t(li.master_port));
    rc = bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(li.master_port));
    rc = bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  SAMBALM_CHECK(rc == 0, "NCCL rendezvous: rank 0 cannot listen on MASTER_PORT={}: {}", li.master_port,
                std::strerror(errno));
  SAMBALM_CHECK(listen(s.fd, 64) == 0, "NCCL rendezvous: listen: {}", std::strerror(errno));
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  std::vector<bool> seen(size_t(li.world), false);
  int served = 0;
  while (served < li.world - 1) {
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    SAMBALM_CHECK(left > 0,
                  "NCCL rendezvous: rank 0 waited {} s (--dist-timeout) and {} of the {} other ranks connected to "
                  "port {}",
                  timeout_s, served, li.world - 1, li.master_port);
    timeval tv{long(std::min(left, 1.0)), 0};
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    Fd c;
    c.fd = accept(s.fd, nullptr, nullptr);
    if (c.fd < 0) continue;  // the 1 s poll, or a connection that went away
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint32_t hello[3] = {0, 0, 0};  // magic, rank, world
    if (!read_all(c.fd, hello, sizeof hello) || hello[0] != kHello) continue;  // not one of ours
    SAMBALM_CHECK(hello[2] == uint32_t(li.world) && hello[1] > 0 && hello[1] < uint32_t(li.world) && !seen[hello[1]],
                  "NCCL rendezvous: a rank connected as rank {} of {}, this job has {} ranks (two jobs on one "
                  "MASTER_PORT?)",
                  hello[1], hello[2], li.world);
    if (write_all(c.fd, &id, sizeof id)) {
      seen[hello[1]] = true;
      ++served;
    }
  }
}

NcclId fetch_id(const LaunchInfo& li, double timeout_s) {
  SAMBALM_CHECK(!li.master_addr.empty() && li.master_port > 0,
                "NCCL rendezvous: rank {} of {} needs MASTER_ADDR and MASTER_PORT (rank 0's host and a free port) in "
                "its environment, as torchrun sets them",
                li.rank, li.world);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(li.master_port);
  const int g = getaddrinfo(li.master_addr.c_str(), port.c_str(), &hints, &res);
  SAMBALM_CHECK(g == 0, "NCCL rendezvous: MASTER_ADDR={}: {}", li.master_addr, gai_strerror(g));
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  NcclId id{};
  bool got = false;
  while (!got && Clock::now() < deadline) {
    for (addrinfo* a = res; a && !got; a = a->ai_next) {
      Fd c;
      c.fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (c.fd < 0 || connect(c.fd, a->ai_addr, a->ai_addrlen) != 0) continue;
      const uint32_t hello[3] = {kHello, uint32_t(li.rank), uint32_t(li.world)};
      got = write_all(c.fd, hello, sizeof hello) && read_all(c.fd, &id, sizeof id);
    }
    if (!got) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // rank 0 not listening yet
  }
  freeaddrinfo(res);
  SAMBALM_CHECK(got, "NCCL rendezvous: rank {} could not reach rank 0 at {}:{} within {} s (--dist-timeout)", li.rank,
                li.master_addr, li.master_port, timeout_s);
  return id;
}

// ---- The communicator. ----

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const LaunchInfo& li, int device, double timeout_s)
      : api_(load_nccl()), rank_(li.rank), size_(li.world), device_(device), timeout_s_(timeout_s) {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    NcclId id{};
    if (rank_ == 0) check(api_.get_unique_id(&id), "ncclGetUniqueId");
    if (size_ > 1) {
      if (rank_ == 0)
        serve_id(li, id, timeout_s_);
      else
        id = fetch_id(li, timeout_s_);
    }
    check(api_.comm_init_rank(&comm_, size_, id, rank_), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaMalloc(&staging_, kStagingBytes), "cudaMalloc (staging buffer)");
    cuda_check(cudaMalloc(&flag_, sizeof(int)), "cudaMalloc");
  }
  ~NcclCommunicator() override {
    if (comm_) api_.comm_destroy(comm_);
    if (staging_) cudaFree(staging_);
    if (flag_) cudaFree(flag_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  void set_phase(const std::string& phase) override { phase_ = phase; }

  void all_reduce_sum(float* data, int64_t n) override { reduce_any(data, n, sizeof(float), kNcclFloat32, kNcclSum); }
  void all_reduce_sum(double* data, int64_t n) override {
    reduce_any(data, n, sizeof(double), kNcclFloat64, kNcclSum);
  }
  void all_reduce_max(double* data, int64_t n) override {
    reduce_any(data, n, sizeof(double), kNcclFloat64, kNcclMax);
  }

  // Blocks of uneven size: one ncclReduce per rank (rank r the root of block r), grouped.
  void reduce_scatter_sum(const float* in, float* out, const std::vector<int64_t>& counts) override {
    SAMBALM_CHECK(int(counts.size()) == size_, "reduce_scatter: {} counts for {} ranks", counts.size(), size_);
    SAMBALM_CHECK(on_device(in) && on_device(out), "NCCL backend: reduce_scatter takes GPU buffers");
    prepare();
    check(api_.group_start(), "ncclGroupStart");
    int64_t off = 0;
    for (int r = 0; r < size_; ++r) {
      const int64_t c = counts[size_t(r)];
      if (c > 0)
        check(api_.reduce(in + off, r == rank_ ? out : nullptr, size_t(c), kNcclFloat32, kNcclSum, r, comm_, stream_),
              "ncclReduce");
      off += c;
    }
    check(api_.group_end(), "ncclGroupEnd");
    wait("reduce-scatter");
  }

  void all_gather_inplace(float* buf, const std::vector<int64_t>& counts) override {
    SAMBALM_CHECK(int(counts.size()) == size_, "all_gather: {} counts for {} ranks", counts.size(), size_);
    SAMBALM_CHECK(on_device(buf), "NCCL backend: all_gather takes a GPU buffer");
    prepare();
    check(api_.group_start(), "ncclGroupStart");
    int64_t off = 0;
    for (int r = 0; r < size_; ++r) {
      const int64_t c = counts[size_t(r)];
      if (c > 0)
        check(api_.broadcast(buf + off, buf + off, size_t(c), kNcclFloat32, r, comm_, stream_), "ncclBroadcast");
      off += c;
    }
    check(api_.group_end(), "ncclGroupEnd");
    wait("all-gather");
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    SAMBALM_CHECK(root >= 0 && root < size_, "broadcast: root {} of {} ranks", root, size_);
    if (on_device(data)) {
      prepare();
      check(api_.broadcast(data, data, size_t(bytes), kNcclUint8, root, comm_, stream_), "ncclBroadcast");
      wait("broadcast");
      return;
    }
    char* p = static_cast<char*>(data);
    for (int64_t a = 0; a < bytes; a += int64_t(kStagingBytes)) {
      const size_t n = size_t(std::min<int64_t>(bytes - a, int64_t(kStagingBytes)));
      prepare();
      if (rank_ == root) cuda_check(cudaMemcpyAsync(staging_, p + a, n, cudaMemcpyHostToDevice, stream_), "copy");
      check(api_.broadcast(staging_, staging_, n, kNcclUint8, root, comm_, stream_), "ncclBroadcast");
      cuda_check(cudaMemcpyAsync(p + a, staging_, n, cudaMemcpyDeviceToHost, stream_), "copy");
      wait("broadcast");
    }
  }

  void barrier() override {
    prepare();
    check(api_.all_reduce(flag_, flag_, 1, kNcclUint8, kNcclSum, comm_, stream_), "ncclAllReduce");
    wait("barrier");
  }

  [[noreturn]] void abort(int code) override {
    if (comm_) api_.comm_abort(comm_);
    comm_ = nullptr;
    std::fflush(nullptr);
    std::_Exit(code);
  }

 private:
  static constexpr size_t kStagingBytes = size_t(64) << 20;

  void check(int rc, const char* what) {
    if (rc == kNcclSuccess) return;
    fail("NCCL {} (rank {} of {}, GPU {}): {}", what, rank_, size_, device_, api_.error_string(rc));
  }

  bool on_device(const void* p) const {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      cudaGetLastError();  // a plain host pointer on older runtimes: clear the sticky-free error
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }

  // Everything queued on any stream of this device (the backward that wrote the gradients) is done.
  void prepare() {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    cuda_check(cudaDeviceSynchronize(), "waiting for the GPU before a collective");
  }

  // Waits for the collective: NCCL's asynchronous errors and the timeout end it with a message.
  void wait(const char* what) {
    const auto t0 = Clock::now();
    for (int spins = 0;; ++spins) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) cuda_check(q, what);
      int async = kNcclSuccess;
      api_.comm_get_async_error(comm_, &async);
      if (async != kNcclSuccess && async != kNcclInProgress) {
        api_.comm_abort(comm_);
        comm_ = nullptr;
        fail("rank {} of {}: NCCL {} failed during {}: {}", rank_, size_, what, phase_.empty() ? "a step" : phase_,
             api_.error_string(async));
      }
      const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
      if (waited > timeout_s_) {
        api_.comm_abort(comm_);
        comm_ = nullptr;
        fail("rank {} of {} waited {:.0f} s (--dist-timeout) in the NCCL {} of {}: another rank died, hangs or is "
             "in another collective",
             rank_, size_, waited, what, phase_.empty() ? "a step" : phase_);
      }
      if (spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // A sum or max in place, on the GPU's buffer or through the staging buffer for a host one.
  void reduce_any(void* data, int64_t n, size_t elem, int type, int op) {
    const char* what = op == kNcclSum ? "all-reduce (sum)" : "all-reduce (max)";
    if (on_device(data)) {
      prepare();
      check(api_.all_reduce(data, data, size_t(n), type, op, comm_, stream_), "ncclAllReduce");
      wait(what);
      return;
    }
    char* p = static_cast<char*>(data);
    const int64_t per = int64_t(kStagingBytes / elem);
    for (int64_t a = 0; a < n; a += per) {
      const size_t k = size_t(std::min(n - a, per));
      prepare();
      cuda_check(cudaMemcpyAsync(staging_, p + a * int64_t(elem), k * elem, cudaMemcpyHostToDevice, stream_), "copy");
      check(api_.all_reduce(staging_, staging_, k, type, op, comm_, stream_), "ncclAllReduce");
      cuda_check(cudaMemcpyAsync(p + a * int64_t(elem), staging_, k * elem, cudaMemcpyDeviceToHost, stream_), "copy");
      wait(what);
    }
  }

  NcclApi api_;
  int rank_, size_, device_;
  double timeout_s_;
  NcclComm comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* staging_ = nullptr;
  void* flag_ = nullptr;
  std::string phase_;
};

}  // namespace

std::unique_ptr<Communicator> nccl_communicator(const LaunchInfo& launch, int device, double timeout_s) {
  return std::make_unique<NcclCommunicator>(launch, device, timeout_s);
}

std::string nccl_library_check() {
  const NcclApi api = load_nccl();
  int v = 0;
  api.get_version(&v);
  return fmt::format("NCCL {}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

}  // namespace sambalm
