#include "train/communicator.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace sambalm {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A launcher variable as a non-negative int; throws naming the variable otherwise.
int env_int(const char* name, int fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  SAMBALM_CHECK(end != v && *end == '\0' && errno == 0 && x >= 0 && x <= (1 << 24),
                "environment: {}={} is not a non-negative integer", name, v);
  return static_cast<int>(x);
}

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_sum(double*, int64_t) override {}
  void all_reduce_max(double*, int64_t) override {}
  void reduce_scatter_sum(const float* in, float* out, const std::vector<int64_t>& counts) override {
    if (in != out) std::memmove(out, in, sizeof(float) * static_cast<size_t>(counts.at(0)));
  }
  void all_gather_inplace(float*, const std::vector<int64_t>&) override {}
  void broadcast(void*, int64_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace

LaunchInfo launch_from_env() {
  LaunchInfo li;
  // MPI launchers: OpenMPI's mpirun, MPICH's Hydra (PMI_*), Slurm's srun (PMI/PMIx and SLURM_STEP_*).
  const bool mpi = env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMI_RANK") || env("PMIX_RANK") ||
                   env("SLURM_STEP_NUM_TASKS");
  if (mpi) {
    li.launcher = "mpi";
    li.rank = env_int("OMPI_COMM_WORLD_RANK", env_int("PMI_RANK", env_int("PMIX_RANK", env_int("SLURM_PROCID", 0))));
    li.world = env_int("OMPI_COMM_WORLD_SIZE",
                       env_int("PMI_SIZE", env_int("SLURM_STEP_NUM_TASKS", env_int("SLURM_NTASKS", 1))));
    li.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK",
                            env_int("MPI_LOCALRANKID", env_int("SLURM_LOCALID", env_int("LOCAL_RANK", 0))));
  } else if (env("WORLD_SIZE") || env("RANK")) {
    li.launcher = "torchrun";
    li.rank = env_int("RANK", 0);
    li.world = env_int("WORLD_SIZE", 1);
    li.local_rank = env_int("LOCAL_RANK", 0);
  }
  if (const char* a = env("MASTER_ADDR")) li.master_addr = a;
  li.master_port = env_int("MASTER_PORT", 0);
  SAMBALM_CHECK(li.world >= 1 && li.rank < li.world, "environment: rank {} is not below the world size {}", li.rank,
                li.world);
  return li;
}

std::unique_ptr<Communicator> single_process_communicator() { return std::make_unique<SingleProcess>(); }

bool mpi_available() {
#if defined(SAMBALM_HAVE_MPI)
  return true;
#else
  return false;
#endif
}

bool nccl_built() {
#if defined(SAMBALM_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> connect_communicator(double timeout_s, const std::string& backend, int gpu) {
  SAMBALM_CHECK(backend == "auto" || backend == "nccl" || backend == "mpi" || backend == "single",
                "--dist-backend {}: expected auto, nccl, mpi or single", backend);
  const LaunchInfo li = launch_from_env();
  if (backend == "single") {
    SAMBALM_CHECK(li.world == 1, "--dist-backend single: this process was launched as rank {} of {}", li.rank,
                  li.world);
    return single_process_communicator();
  }
  if (backend == "nccl" || (backend == "auto" && gpu >= 0 && li.world > 1)) {
    SAMBALM_CHECK(gpu >= 0, "--dist-backend nccl exchanges GPU buffers: train with --device cuda");
#if defined(SAMBALM_HAVE_CUDA)
    return nccl_communicator(li, gpu, timeout_s);
#else
    fail("training on {} processes on GPUs needs the NCCL backend, which comes with the CUDA build; this sambalm "
         "was built without CUDA",
         li.world);
#endif
  }
  SAMBALM_CHECK(gpu < 0 || li.world == 1,
                "--dist-backend mpi runs the collectives on the CPU's buffers: train with --device cpu, or use "
                "--dist-backend nccl on GPUs");
  if (li.launcher == "torchrun") {
    SAMBALM_CHECK(li.world == 1,
                  "WORLD_SIZE={} RANK={} (torchrun's variables): on the CPU the ranks exchange gradients through MPI, "
                  "which torchrun does not start; launch the same command as `mpirun -np {} sambalm train ...` (or "
                  "srun) instead",
                  li.world, li.rank, li.world);
    return single_process_communicator();
  }
  // A launch of one process (mpirun -np 1, a Slurm batch step) needs no MPI: MPI_Init would only cost
  // a singleton start-up.
  if (li.launcher == "mpi" && li.world > 1) {
#if defined(SAMBALM_HAVE_MPI)
    return mpi_communicator(li, timeout_s);
#else
    SAMBALM_CHECK(li.world == 1,
                  "launched as rank {} of {} by mpirun/srun, but this sambalm was built without MPI: install "
                  "libopenmpi-dev (scripts/setup.sh) and rebuild",
                  li.rank, li.world);
#endif
  }
  return single_process_communicator();
}

}  // namespace sambalm
