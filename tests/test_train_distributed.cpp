// Data-parallel training under mpirun on the CPU (MPI backend): 2 ranks give the weights of one
// process with the same global batch (twice the micro-batch, or twice the accumulation), with and
// without ZeRO-1; a 2-rank checkpoint resumes on 1 rank as the 2-rank run continues; a killed or hung
// rank ends the job with a message naming a rank and leaves the last checkpoint loadable; bad input.
// Every test skips when this build has no MPI or mpirun is absent. Ranks run with one thread each
// (OMP_NUM_THREADS=1), so a test keeps to the 2 cores of CI.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

std::string mpiexec() {
  const std::string m = SAMBALM_MPIEXEC;
  return !m.empty() && ::access(m.c_str(), X_OK) == 0 ? m : "";
}

#define REQUIRE_MPI()                                                                               \
  do {                                                                                              \
    if (mpiexec().empty()) GTEST_SKIP() << "no mpirun (or this build has no MPI): nothing to test"; \
  } while (0)

using test::sh;

// `env` then the program under mpirun with n ranks, as root where need be (OpenMPI refuses root
// without both the flag and the variables), bounded by `timeout 60`: a hung job fails with 124.
int mpirun(int n, const std::string& args, std::string* out, const std::string& env = "") {
  return sh(
      "env OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_rmaps_base_oversubscribe=1 " +
          env + " timeout 60 " + mpiexec() + " --allow-run-as-root --oversubscribe -np " + std::to_string(n) + " " +
          SAMBALM_CLI_PATH + " " + args,
      out);
}

int single(const std::string& args, std::string* out, const std::string& env = "") {
  return sh("env OMP_NUM_THREADS=1 " + env + " timeout 60 " + std::string(SAMBALM_CLI_PATH) + " " + args, out);
}

std::string write_text(const std::string& dir) { return test::write_word_text(dir); }

// A small Samba (Mamba + sliding-window attention + MLPs), 20 steps, evaluation at 10 and 20.
std::string train_args(const std::string& data, const std::string& out, int steps = 20, int n_embd = 32) {
  return "train --model Samba_421M --n-layer 2 --n-embd " + std::to_string(n_embd) +
         " --n-head 2 --intermediate-size 64 --local-window 8 --vocab-size 256 --tokenizer bytes --seq-len 32 "
         "--steps " +
         std::to_string(steps) + " --eval-every 10 --eval-batches 2 --lr 2e-3 --threads 1 --data " + data + " --out " +
         out;
}

double worst_rel_error(const std::string& a_path, const std::string& b_path) {
  return test::worst_tensor_error(a_path, b_path, 1e-5);
}

std::string model_file(const std::string& run) { return run + "/model/model.safetensors"; }

std::vector<double> losses(const std::string& run) {
  std::vector<double> v;
  for (const auto& r : read_metrics(run + "/metrics.jsonl"))
    if (r.contains("loss") && r["loss"].is_number()) v.push_back(r["loss"].get<double>());
  return v;
}

TEST(TrainDistributed, TwoRanksEqualOneProcessWithTheSameGlobalBatch) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_eq"), data = write_text(dir);
  std::string out;
  // Buckets of 0.01 MiB: the gradients travel in several all-reduces.
  ASSERT_EQ(mpirun(2, train_args(data, dir + "/r2") + " --batch 2 --bucket-mb 0.01", &out), 0) << out;
  EXPECT_NE(out.find("x 2 processes (mpi)"), std::string::npos) << out;
  EXPECT_NE(out.find("global batch 4 sequences"), std::string::npos) << out;
  // Plain progress lines: mpirun hands rank 0 a pseudo-terminal whatever the output goes to.
  EXPECT_EQ(out.find("\033["), std::string::npos) << out;
  EXPECT_NE(out.find("step 20/20 |"), std::string::npos) << out;
  ASSERT_EQ(single(train_args(data, dir + "/b4") + " --batch 4", &out), 0) << out;
  ASSERT_EQ(single(train_args(data, dir + "/a2") + " --batch 2 --grad-accum 2", &out), 0) << out;
  worst_rel_error(model_file(dir + "/r2"), model_file(dir + "/b4"));
  worst_rel_error(model_file(dir + "/r2"), model_file(dir + "/a2"));

  // Rank 0 alone wrote metrics.jsonl: one line per step (and step 0's evaluation), the global batch in each.
  auto recs = read_metrics(dir + "/r2/metrics.jsonl");
  ASSERT_EQ(recs.size(), 21u);
  for (size_t i = 1; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i]["step"].get<int64_t>(), int64_t(i));
    EXPECT_EQ(recs[i]["global_batch"].get<int64_t>(), 4);
    EXPECT_EQ(recs[i]["tokens"].get<int64_t>(), int64_t(i) * 4 * 32);
  }
  // The validation loss is the same windows' (the ranks split them and add up).
  auto b4 = read_metrics(dir + "/b4/metrics.jsonl");
  EXPECT_NEAR(recs[20]["val_loss"].get<double>(), b4[20]["val_loss"].get<double>(), 1e-5);
  const auto l2 = losses(dir + "/r2"), l1 = losses(dir + "/b4");
  ASSERT_EQ(l2.size(), l1.size());
  for (size_t i = 0; i < l1.size(); ++i) EXPECT_NEAR(l2[i], l1[i], 1e-5 * std::abs(l1[i])) << i;
}

// A weighted mixture of sources: every rank counts the whole world's source picks, so 2 ranks draw one
// process's windows.
TEST(TrainDistributed, MixtureOnTwoRanksEqualsOneProcess) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_mix"), data = write_text(dir);
  fs::copy_file(data, dir + "/b.txt");
  std::ofstream(dir + "/val.txt") << std::string(4000, 'x') << "the state of the window";
  const std::string mix = data + ":0.7," + dir + "/b.txt:0.3 --val-data " + dir + "/val.txt";
  std::string out;
  ASSERT_EQ(mpirun(2, train_args(mix, dir + "/r2") + " --batch 2", &out), 0) << out;
  ASSERT_EQ(single(train_args(mix, dir + "/b4") + " --batch 4", &out), 0) << out;
  worst_rel_error(model_file(dir + "/r2"), model_file(dir + "/b4"));
}

TEST(TrainDistributed, Zero1EqualsOneProcess) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_zero"), data = write_text(dir);
  std::string out;
  // Buckets of 0.01 MiB, so that each reduce-scatter and all-gather cuts the shards somewhere inside.
  ASSERT_EQ(mpirun(2, train_args(data, dir + "/z") + " --batch 2 --zero 1 --bucket-mb 0.01", &out), 0) << out;
  EXPECT_NE(out.find("ZeRO-1"), std::string::npos) << out;
  ASSERT_EQ(single(train_args(data, dir + "/b4") + " --batch 4", &out), 0) << out;
  worst_rel_error(model_file(dir + "/z"), model_file(dir + "/b4"));
  // The checkpoint holds the full, gathered AdamW moments: those of the single process.
  const std::string ck = "/checkpoints/" + checkpoint_name(20) + "/trainer_state.safetensors";
  worst_rel_error(dir + "/z" + ck, dir + "/b4" + ck);
  // 3 ranks: shards of unequal sizes (the parameter count is not a multiple of 3).
  ASSERT_EQ(mpirun(3, train_args(data, dir + "/z3") + " --batch 1 --zero 1 --bucket-mb 0.01", &out), 0) << out;
  ASSERT_EQ(single(train_args(data, dir + "/b3") + " --batch 3", &out), 0) << out;
  worst_rel_error(model_file(dir + "/z3"), model_file(dir + "/b3"));
  worst_rel_error(dir + "/z3" + ck, dir + "/b3" + ck);
}

TEST(TrainDistributed, TwoRankCheckpointResumesOnOneRank) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_resume"), data = write_text(dir);
  std::string out;
  ASSERT_EQ(mpirun(2, train_args(data, dir + "/full") + " --batch 2", &out), 0) << out;
  // Stopped at step 10 with ZeRO-1 (sharded moments gathered into the checkpoint), resumed by one
  // process with the same global batch.
  ASSERT_EQ(mpirun(2, train_args(data, dir + "/split") + " --batch 2 --zero 1 --stop-after 10", &out), 0) << out;
  ASSERT_TRUE(fs::exists(dir + "/split/checkpoints/" + checkpoint_name(10))) << out;
  ASSERT_EQ(single(train_args(data, dir + "/split") + " --batch 2 --global-batch 4 --resume", &out), 0) << out;
  EXPECT_NE(out.find("written by 2 processes"), std::string::npos) << out;
  worst_rel_error(model_file(dir + "/split"), model_file(dir + "/full"));
  const auto a = losses(dir + "/split"), b = losses(dir + "/full");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(b[i])) << i;
}

// And the other way: a checkpoint of one process continues on 2 ranks with ZeRO-1 (each takes its
// shard of the moments).
TEST(TrainDistributed, OneProcessCheckpointResumesOnTwoRanks) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_resume2"), data = write_text(dir);
  std::string out;
  ASSERT_EQ(single(train_args(data, dir + "/full") + " --batch 4", &out), 0) << out;
  ASSERT_EQ(single(train_args(data, dir + "/split") + " --batch 4 --stop-after 10", &out), 0) << out;
  ASSERT_EQ(mpirun(2, train_args(data, dir + "/split") + " --batch 2 --zero 1 --resume", &out), 0) << out;
  worst_rel_error(model_file(dir + "/split"), model_file(dir + "/full"));
}

// A rank killed in the middle of a step: mpirun ends the job (well inside `timeout 60`) naming the
// rank, and the newest checkpoint loads.
TEST(TrainDistributed, KilledRankEndsTheJobAndTheLastCheckpointLoads) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_kill"), data = write_text(dir);
  std::string out;
  const int rc =
      mpirun(2, train_args(data, dir + "/r", 1000) + " --batch 2 --save-every 2", &out, "SAMBALM_TEST_KILL_RANK=1:7");
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(rc, 124) << "the job did not end within 60 s:\n" << out;
  EXPECT_NE(out.find("rank 1"), std::string::npos) << out;
  auto ck = latest_checkpoint(dir + "/r");
  ASSERT_TRUE(ck.has_value()) << out;
  EXPECT_EQ(fs::path(*ck).filename().string(), checkpoint_name(6));
  LoadedModel lm = load_model(*ck);
  TrainerState st = load_trainer_state(*ck, lm.params.size());
  EXPECT_EQ(st.step, 6);
  // And training goes on from it, here on one process.
  ASSERT_EQ(single(train_args(data, dir + "/r", 8) + " --batch 4 --resume", &out), 0) << out;
}

// A rank that hangs: the others' watchdog ends the job after --dist-timeout, naming the waiting rank
// and the collective, and the hung rank's watchdog names it.
TEST(TrainDistributed, HungRankEndsTheJobAfterTheTimeout) {
  REQUIRE_MPI();
  const std::string dir = test::temp_dir("dist_hang"), data = write_text(dir);
  std::string out;
  const int rc =
      mpirun(2, train_args(data, dir + "/r", 1000) + " --batch 2 --dist-timeout 4", &out, "SAMBALM_TEST_HANG_RANK=1:5");
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(rc, 124) << "the job did not end within 60 s:\n" << out;
  EXPECT_NE(out.find("rank 0 of 2 waited"), std::string::npos) << out;
  EXPECT_NE(out.find("gradients of step 5"), std::string::npos) << out;
  // The rank behind names itself: its clock outside collectives started before rank 0's wait did.
  EXPECT_NE(out.find("note: rank 1 of 2 has entered no collective"), std::string::npos) << out;
}

TEST(TrainDistributed, BadInputIsAClearError) {
  const std::string dir = test::temp_dir("dist_bad"), data = write_text(dir);
  std::string out;
  // One process: --zero 1 has nothing to shard over; torchrun's variables without mpirun; a global
  // batch the micro-batch does not divide.
  EXPECT_EQ(single(train_args(data, dir + "/z") + " --batch 2 --zero 1", &out), 1) << out;
  EXPECT_NE(out.find("error: --zero 1"), std::string::npos) << out;
  EXPECT_EQ(single(train_args(data, dir + "/t") + " --batch 2", &out, "WORLD_SIZE=2 RANK=0 LOCAL_RANK=0"), 1) << out;
  EXPECT_NE(out.find("mpirun -np 2"), std::string::npos) << out;
  EXPECT_EQ(single(train_args(data, dir + "/g") + " --batch 2 --global-batch 5", &out), 1) << out;
  EXPECT_NE(out.find("--global-batch 5: not a multiple of --batch 2"), std::string::npos) << out;
  EXPECT_EQ(single(train_args(data, dir + "/g") + " --batch 2 --grad-accum 3 --global-batch 4", &out), 1) << out;
  EXPECT_NE(out.find("contradicts --global-batch"), std::string::npos) << out;
  // NCCL exchanges GPU buffers; "single" refuses a launch of several processes.
  EXPECT_EQ(single(train_args(data, dir + "/n") + " --device cpu --dist-backend nccl", &out), 1) << out;
  EXPECT_NE(out.find("--dist-backend nccl exchanges GPU buffers: train with --device cuda"), std::string::npos) << out;
  EXPECT_EQ(single(train_args(data, dir + "/s") + " --dist-backend single", &out, "WORLD_SIZE=2 RANK=1"), 1) << out;
  EXPECT_NE(out.find("--dist-backend single: this process was launched as rank 1 of 2"), std::string::npos) << out;
  EXPECT_NE(single(train_args(data, dir + "/s") + " --dist-backend gloo", &out), 0) << out;
  EXPECT_NE(out.find("--dist-backend"), std::string::npos) << out;

  if (mpiexec().empty()) GTEST_SKIP() << "no mpirun: the checks under mpirun are skipped";
  // The world size does not divide the global batch.
  EXPECT_NE(mpirun(2, train_args(data, dir + "/w") + " --batch 2 --global-batch 6", &out), 0) << out;
  EXPECT_NE(out.find("--global-batch 6: not a multiple of --batch 2 x 2 processes = 4"), std::string::npos) << out;
  // A checkpoint of another model.
  ASSERT_EQ(mpirun(2, train_args(data, dir + "/c") + " --batch 2 --stop-after 2", &out), 0) << out;
  EXPECT_NE(mpirun(2, train_args(data, dir + "/c", 20, 64) + " --batch 2 --resume", &out), 0) << out;
  EXPECT_NE(out.find("--resume: --n-embd 64 differs from the checkpoint"), std::string::npos) << out;
  EXPECT_EQ(out.find("waited"), std::string::npos) << "not a timeout:\n" << out;
}

// NCCL is loaded when a distributed GPU run starts: a missing library or a file that is not NCCL is an
// error naming the file and what to install, raised before any GPU work.
TEST(TrainDistributed, MissingNcclIsAClearError) {
#if defined(SAMBALM_HAVE_CUDA)
  const char* saved = std::getenv("SAMBALM_NCCL_LIBRARY");
  const std::string keep = saved ? saved : "";
  auto expect_error = [](const std::string& lib, const std::string& needle) {
    ::setenv("SAMBALM_NCCL_LIBRARY", lib.c_str(), 1);
    try {
      nccl_library_check();
      ADD_FAILURE() << lib << ": loaded as NCCL";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("/nonexistent/libnccl.so.2", "/nonexistent/libnccl.so.2");
  expect_error("/nonexistent/libnccl.so.2", "SAMBALM_NCCL_LIBRARY");
  expect_error("libz.so.1", "has no symbol ncclGetVersion");  // a real library that is not NCCL
  if (saved)
    ::setenv("SAMBALM_NCCL_LIBRARY", keep.c_str(), 1);
  else
    ::unsetenv("SAMBALM_NCCL_LIBRARY");
  // Where NCCL is installed, its version is read.
  try {
    EXPECT_EQ(nccl_library_check().rfind("NCCL 2.", 0), 0u);
  } catch (const Error& e) {
    std::printf("no NCCL on this machine: %s\n", e.what());
  }
#else
  GTEST_SKIP() << "this build has no CUDA backend (the NCCL backend comes with it)";
#endif
}

}  // namespace
}  // namespace sambalm
