// The MPI backend of Communicator (train/communicator.h): MPI_COMM_WORLD, fp32/fp64 sums, the CPU
// buffers the trainer hands over. Built only when CMake finds MPI; the only file that includes mpi.h.
//
// Counts: MPI takes int counts, so one call moves at most INT_MAX values; the trainer's buckets stay
// far below that, and all_reduce/broadcast split larger buffers themselves.
//
// The watchdog: a thread that wakes a few times a second and, when the collective in flight has
// waited longer than the timeout, prints which rank waited in what and ends the job with MPI_Abort
// (MPI is initialised with MPI_THREAD_MULTIPLE for this; where the library refuses it, the rank
// exits instead, and mpirun/srun end the others when one rank exits without MPI_Finalize).
// The C API only: OpenMPI's and MPICH's mpi.h otherwise drag in their deprecated C++ bindings,
// which live in a library (libmpi_cxx) that is not linked.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "train/communicator.h"

namespace sambalm {
namespace {

using Clock = std::chrono::steady_clock;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("MPI {}: {}", what, std::string(msg, static_cast<size_t>(len)));
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const LaunchInfo& launch, double timeout_s) : timeout_s_(timeout_s) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_), "MPI_Init_thread");
      owns_mpi_ = true;
    } else {
      MPI_Query_thread(&thread_level_);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // torchrun-style variables set beside an MPI launch (a cluster script exporting both) must agree.
    const char* ws = std::getenv("WORLD_SIZE");
    const char* rk = std::getenv("RANK");
    if ((ws && *ws && std::atoi(ws) != size_) || (rk && *rk && std::atoi(rk) != rank_)) {
      std::fprintf(stderr, "error: rank %d of %d (MPI): the environment says RANK=%s WORLD_SIZE=%s\n", rank_, size_,
                   rk ? rk : "", ws ? ws : "");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    (void)launch;
    if (size_ > 1) watchdog_ = std::thread([this] { watch(); });
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
    if (owns_mpi_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce_sum(float* data, int64_t n) override { all_reduce(data, n, MPI_FLOAT, MPI_SUM, sizeof(float)); }
  void all_reduce_sum(double* data, int64_t n) override { all_reduce(data, n, MPI_DOUBLE, MPI_SUM, sizeof(double)); }
  void all_reduce_max(double* data, int64_t n) override { all_reduce(data, n, MPI_DOUBLE, MPI_MAX, sizeof(double)); }

  void reduce_scatter_sum(const float* in, float* out, const std::vector<int64_t>& counts) override {
    std::vector<int> c = int_counts(counts);
    InFlight f(*this);
    check(MPI_Reduce_scatter(in, out, c.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "reduce-scatter");
  }

  void all_gather_inplace(float* buf, const std::vector<int64_t>& counts) override {
    std::vector<int> c = int_counts(counts), displs(c.size());
    int64_t at = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      SAMBALM_CHECK(at <= INT_MAX, "MPI all-gather: offset {} above INT_MAX", at);
      displs[i] = static_cast<int>(at);
      at += c[i];
    }
    InFlight f(*this);
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD),
          "all-gather");
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    InFlight f(*this);
    char* p = static_cast<char*>(data);
    for (int64_t off = 0; off < bytes; off += kMaxCount) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxCount, bytes - off));
      check(MPI_Bcast(p + off, n, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
    }
  }

  void barrier() override {
    InFlight f(*this);
    check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
  }

  void set_phase(const std::string& phase) override {
    std::lock_guard<std::mutex> lock(mu_);
    phase_ = phase;
  }

 private:
  static constexpr int64_t kMaxCount = int64_t{1} << 30;

  // Times as steady-clock ticks (atomics hold integers).
  static int64_t now_ticks() { return Clock::now().time_since_epoch().count(); }
  static double secs(int64_t since) {
    return std::chrono::duration<double>(Clock::now().time_since_epoch() - Clock::duration(since)).count();
  }

  // Marks a collective in flight for the watchdog.
  struct InFlight {
    MpiCommunicator& c;
    explicit InFlight(MpiCommunicator& comm) : c(comm) {
      c.noted_ = false;
      c.since_.store(now_ticks(), std::memory_order_relaxed);
    }
    ~InFlight() {
      c.last_end_.store(now_ticks(), std::memory_order_relaxed);
      c.since_.store(0, std::memory_order_relaxed);
    }
  };

  std::vector<int> int_counts(const std::vector<int64_t>& counts) const {
    SAMBALM_CHECK(static_cast<int>(counts.size()) == size_, "MPI collective: {} counts for {} ranks", counts.size(),
                  size_);
    std::vector<int> c;
    for (int64_t n : counts) {
      SAMBALM_CHECK(n >= 0 && n <= INT_MAX, "MPI collective: a block of {} values (at most INT_MAX)", n);
      c.push_back(static_cast<int>(n));
    }
    return c;
  }

  void all_reduce(void* data, int64_t n, MPI_Datatype type, MPI_Op op, size_t elem) {
    InFlight f(*this);
    char* p = static_cast<char*>(data);
    for (int64_t off = 0; off < n; off += kMaxCount) {
      const int k = static_cast<int>(std::min<int64_t>(kMaxCount, n - off));
      check(MPI_Allreduce(MPI_IN_PLACE, p + off * static_cast<int64_t>(elem), k, type, op, MPI_COMM_WORLD),
            "all-reduce");
    }
  }

  // Two clocks: how long the collective in flight has waited (past the timeout: the others are
  // missing, end the job), and how long this rank has been outside any collective (past the timeout:
  // this rank is the one behind, which it says once, so that the job's output names it; the ranks
  // in sync all pass through a collective every step, so only a stuck rank, or a step, evaluation or
  // checkpoint longer than the timeout, gets there).
  void watch() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
      if (stopping_) break;
      const int64_t since = since_.load(std::memory_order_relaxed);
      if (since == 0) {
        const double idle = secs(last_end_.load(std::memory_order_relaxed));
        if (idle >= timeout_s_ && !noted_) {
          noted_ = true;
          std::fprintf(stderr,
                       "note: rank %d of %d has entered no collective for %.0f s since '%s': this rank is behind the "
                       "others (stuck, or a step this slow); they end the job after --dist-timeout %g\n",
                       rank_, size_, idle, phase_.empty() ? "start-up" : phase_.c_str(), timeout_s_);
          std::fflush(stderr);
        }
        continue;
      }
      const double waited = secs(since);
      if (waited < timeout_s_) continue;
      std::fprintf(stderr,
                   "error: rank %d of %d waited %.0f s in a collective (%s) for the other ranks (--dist-timeout %g): "
                   "a rank died or hangs; ending the job. The newest complete checkpoint is intact; continue with "
                   "--resume.\n",
                   rank_, size_, waited, phase_.empty() ? "start-up" : phase_.c_str(), timeout_s_);
      std::fflush(stdout);
      std::fflush(stderr);
      // A moment for the rank behind to say so (its clock started no later than this one's).
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::seconds(2));
      if (thread_level_ >= MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, 1);
      std::_Exit(1);
    }
  }

  double timeout_s_;
  int rank_ = 0, size_ = 1, thread_level_ = MPI_THREAD_SINGLE;
  bool owns_mpi_ = false;
  std::atomic<int64_t> since_{0}, last_end_{now_ticks()};
  std::atomic<bool> noted_{false};  // the "behind" note was printed for the current gap
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::string phase_;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_communicator(const LaunchInfo& launch, double timeout_s) {
  return std::make_unique<MpiCommunicator>(launch, timeout_s);
}

}  // namespace sambalm
