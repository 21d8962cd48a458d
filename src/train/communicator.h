// The processes of a data-parallel run and the collectives between them, behind one interface so
// that the trainer never sees a transport. Backends:
//   single   one process (no launcher): every collective is the identity
//   mpi      MPI over MPI_COMM_WORLD, the CPU backend's collectives (train/mpi_communicator.cpp, the
//            one file that includes mpi.h; built when CMake finds MPI)
//   nccl     NCCL, one rank per GPU (train/nccl_communicator.cpp, built with the CUDA backend; NCCL is
//            loaded at run time): the same calls on the GPU's buffers (host buffers are staged)
//
// Who launched us (launch_from_env):
//   mpirun / mpiexec (OpenMPI, MPICH), srun   OMPI_COMM_WORLD_*, PMI_*, PMIX_RANK, SLURM_STEP_NUM_TASKS:
//                                             with more than one process, MPI is initialised and its
//                                             rank/size are the run's (one process runs alone)
//   torchrun                                  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT:
//                                             read and checked against MPI's when both are set; without
//                                             an MPI launcher a WORLD_SIZE above 1 is an error on the
//                                             CPU (torchrun starts no MPI, and the CPU collectives are
//                                             MPI's), naming the mpirun command to use instead
//   nothing                                   one process
//
// Every collective is entered by every rank in the same order (the trainer's loop is the same on all
// ranks). A watchdog bounds how long one may wait: a rank that died or hangs makes the others stop
// within --dist-timeout seconds with a message naming the waiting rank and the collective, while a
// rank that has entered no collective for that long says it is the one behind (a rank that dies is
// normally reported sooner, by mpirun, which names it and ends the job).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sambalm {

struct LaunchInfo {
  std::string launcher;  // "mpi" (mpirun/mpiexec/srun), "torchrun", or "" (a plain process)
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;  // torchrun's rendezvous (recorded for a GPU backend; the MPI path needs none)
  int master_port = 0;
};

// Reads the launcher variables above; throws Error for malformed ones (WORLD_SIZE=abc, RANK >= WORLD_SIZE).
LaunchInfo launch_from_env();

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "single", "mpi", "nccl"
  bool distributed() const { return backend() != "single"; }

  // Sum over ranks, in place; every rank gets the same result.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  virtual void all_reduce_sum(double* data, int64_t n) = 0;
  // Maximum over ranks, in place.
  virtual void all_reduce_max(double* data, int64_t n) = 0;
  // in: sum(counts) values on every rank; out: this rank's counts[rank()] values of the sum over
  // ranks, the block that starts at counts[0] + ... + counts[rank() - 1].
  virtual void reduce_scatter_sum(const float* in, float* out, const std::vector<int64_t>& counts) = 0;
  // buf: sum(counts) values, this rank's block (placed as above) filled; afterwards every block is,
  // from its rank.
  virtual void all_gather_inplace(float* buf, const std::vector<int64_t>& counts) = 0;
  // root's bytes to every rank.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job now (a rank that caught an error while the others may be waiting in a
  // collective); never returns.
  [[noreturn]] virtual void abort(int code) = 0;

  // What the next collectives are for, named in the watchdog's message ("gradients of step 12").
  virtual void set_phase(const std::string& phase) { (void)phase; }
};

// One process: the identity collectives.
std::unique_ptr<Communicator> single_process_communicator();

// The communicator for how this process was launched and where it trains.
//   backend "auto": on the CPU, MPI under mpirun/srun (when this build has MPI: otherwise a launch of
//     more than one process is an error), one process otherwise; torchrun's variables with
//     WORLD_SIZE > 1 and no MPI launcher are an Error saying to launch with mpirun. On a GPU (gpu >= 0)
//     with more than one process: NCCL.
//   "nccl": NCCL even for one process (gpu must be >= 0); "mpi": MPI (the CPU); "single": one process.
// gpu: the GPU this rank trains on, -1 for the CPU. timeout_s: the bound on one collective.
std::unique_ptr<Communicator> connect_communicator(double timeout_s, const std::string& backend = "auto",
                                                  int gpu = -1);

// Whether this build has the NCCL backend (the CUDA backend is built; NCCL itself loads at run time).
bool nccl_built();
#if defined(SAMBALM_HAVE_CUDA)
// train/nccl_communicator.cpp.
std::unique_ptr<Communicator> nccl_communicator(const LaunchInfo& launch, int gpu, double timeout_s);
// Loads NCCL and returns its version ("NCCL 2.27.3"); throws the error a distributed GPU run would.
std::string nccl_library_check();
#endif

// Whether this build can run distributed on the CPU (MPI compiled in).
bool mpi_available();

#if defined(SAMBALM_HAVE_MPI)
// train/mpi_communicator.cpp; the launch info is what launch_from_env read (checked against MPI's).
std::unique_ptr<Communicator> mpi_communicator(const LaunchInfo& launch, double timeout_s);
#endif

}  // namespace sambalm
