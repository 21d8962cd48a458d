// The pieces of data-parallel training that need no second process: shards and their decay ranges,
// the optimizer wrapper on one process (the plain clip + AdamW path), the launcher variables, the
// memory per process that `sambalm info --world-size N --zero 1` reports.
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "model/memory_estimate.h"
#include "testing.h"
#include "train/communicator.h"
#include "train/data_parallel.h"

namespace sambalm {
namespace {

TEST(DataParallel, ShardsCoverTheBufferInOrder) {
  for (size_t n : {0u, 1u, 7u, 64u, 1001u}) {
    for (int world : {1, 2, 3, 8}) {
      size_t at = 0;
      for (int r = 0; r < world; ++r) {
        const Shard s = shard_of(n, r, world);
        EXPECT_EQ(s.begin, at) << n << " " << world << " " << r;
        EXPECT_LE(s.size(), (n + size_t(world) - 1) / size_t(world));
        at = s.end;
      }
      EXPECT_EQ(at, n) << n << " " << world;
    }
  }
}

TEST(DataParallel, DecayRangesFollowTheShard) {
  const std::vector<DecayRange> all = {{0, 10, true}, {10, 5, false}, {15, 20, true}};
  auto in = ranges_in_shard(all, Shard{8, 18});
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0].offset, 0u);
  EXPECT_EQ(in[0].size, 2u);
  EXPECT_TRUE(in[0].decay);
  EXPECT_EQ(in[1].offset, 2u);
  EXPECT_EQ(in[1].size, 5u);
  EXPECT_FALSE(in[1].decay);
  EXPECT_EQ(in[2].offset, 7u);
  EXPECT_EQ(in[2].size, 3u);
  EXPECT_TRUE(in[2].decay);
}

// One process: the wrapper is clip_grad_norm + AdamW, bit for bit.
TEST(DataParallel, OneProcessIsThePlainOptimizer) {
  const size_t n = 1000;
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  std::vector<float> p(n), grad(n);
  for (auto& x : p) x = nd(g);
  for (auto& x : grad) x = 3 * nd(g);
  const std::vector<DecayRange> ranges = {{0, 600, true}, {600, 400, false}};
  const AdamWOptions ao{0.9, 0.95, 1e-8, 0.1};
  auto comm = single_process_communicator();
  DataParallelOptimizer dp(*comm, n, ao, ranges, cpu_context(), 0, 128);
  AdamW plain(n, ao, ranges);
  std::vector<float> p1 = p, p2 = p;
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g1 = grad, g2 = grad;
    const double n1 = dp.reduce_and_clip(g1.data(), 1.0);
    const double n2 = clip_grad_norm(g2.data(), n, 1.0);
    EXPECT_EQ(n1, n2);
    dp.step(p1.data(), g1.data(), 1e-2);
    plain.step(p2.data(), g2.data(), 1e-2);
  }
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(dp.full_m(), plain.m());
  EXPECT_EQ(dp.t(), 3);
}

TEST(DataParallel, ZeroStagesAreChecked) {
  auto comm = single_process_communicator();
  EXPECT_THROW(DataParallelOptimizer(*comm, 10, AdamWOptions{}, {}, cpu_context(), 2, 4), Error);
}

struct EnvGuard {
  std::vector<std::string> names;
  void set(const std::string& k, const std::string& v) {
    names.push_back(k);
    ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~EnvGuard() {
    for (const auto& k : names) ::unsetenv(k.c_str());
  }
};

TEST(DataParallel, LauncherVariables) {
  for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "RANK",
                        "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"})
    if (std::getenv(k)) GTEST_SKIP() << k << " is set: this test reads a clean environment";
  EXPECT_EQ(launch_from_env().launcher, "");
  EXPECT_EQ(launch_from_env().world, 1);
  {
    EnvGuard e;
    e.set("RANK", "3");
    e.set("WORLD_SIZE", "8");
    e.set("LOCAL_RANK", "1");
    e.set("MASTER_ADDR", "node0");
    e.set("MASTER_PORT", "29500");
    const LaunchInfo li = launch_from_env();
    EXPECT_EQ(li.launcher, "torchrun");
    EXPECT_EQ(li.rank, 3);
    EXPECT_EQ(li.world, 8);
    EXPECT_EQ(li.local_rank, 1);
    EXPECT_EQ(li.master_addr, "node0");
    EXPECT_EQ(li.master_port, 29500);
    // The CPU backend cannot join torchrun's processes: a clear error naming the mpirun command.
    try {
      connect_communicator(10);
      ADD_FAILURE() << "no error";
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find("mpirun -np 8"), std::string::npos) << err.what();
    }
  }
  {
    EnvGuard e;
    e.set("RANK", "0");
    e.set("WORLD_SIZE", "1");
    EXPECT_EQ(connect_communicator(10)->size(), 1);  // a torchrun of one process is one process
  }
  {
    EnvGuard e;
    e.set("RANK", "2");
    e.set("WORLD_SIZE", "2");
    EXPECT_THROW(launch_from_env(), Error);
  }
  {
    EnvGuard e;
    e.set("WORLD_SIZE", "two");
    EXPECT_THROW(launch_from_env(), Error);
  }
}

TEST(DataParallel, MemoryPerProcess) {
  ModelConfig c = ModelConfig::from_preset("Samba_421M");
  const MemoryEstimate m = estimate_memory(c, 2, 1024);
  const int64_t P = 421793280;
  const DataParallelMemory one = data_parallel_memory(m, 1, 0);
  EXPECT_EQ(one.total, m.train_total);
  const DataParallelMemory z = data_parallel_memory(m, 8, 1);
  EXPECT_EQ(z.adam, 8 * (P / 8));
  EXPECT_EQ(z.grad_shard, 4 * (P / 8));
  EXPECT_EQ(z.total, 8 * P + 12 * (P / 8) + m.train_activations);
  EXPECT_EQ(data_parallel_memory(m, 8, 0).total, m.train_total);

  std::string out;
  ASSERT_EQ(test::run_cli("info Samba_421M --world-size 8 --zero 1 --json", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["training_per_process"]["adamw_bytes"].get<int64_t>(), 8 * (P / 8));
  EXPECT_EQ(j["training_per_process"]["world_size"].get<int>(), 8);
  ASSERT_EQ(test::run_cli("info Samba_421M --world-size 8 --zero 1", &out), 0) << out;
  EXPECT_NE(out.find("training memory per process of 8"), std::string::npos) << out;
  EXPECT_NE(out.find("AdamW moments (shard)"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
