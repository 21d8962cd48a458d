// The NCCL backend of the trainer's communicator on one GPU: a run with NCCL and one rank (every
// collective of a distributed step goes through NCCL) ends with the weights of the run without a
// communicator; two ranks on the one GPU either train like one process with twice the micro-batch
// or (NCCL refuses two ranks on one device) stop with a clear error, never hang.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "gpu_testing.h"
#include "io/safetensors.h"
#include "testing.h"

namespace sambalm {
namespace {

using test::sh;

std::string train_args(const std::string& data, const std::string& out, const std::string& precision) {
  return std::string(SAMBALM_CLI_PATH) +
         " train --model Samba_421M --n-layer 2 --n-embd 64 --n-head 2 --intermediate-size 128 --local-window 8 "
         "--vocab-size 256 --tokenizer bytes --seq-len 32 --steps 20 --eval-every 10 --eval-batches 2 --lr 2e-3 "
         "--device cuda:0 --precision " +
         precision + " --data " + data + " --out " + out;
}

// `timeout` runs its command directly (no shell), so the variables a test adds after it go through a
// second `env`.
const char* kEnv = "env NCCL_NVLS_ENABLE=0 OMP_NUM_THREADS=2 timeout 300 env ";

TEST(CudaNccl, OneRankEqualsTheRunWithoutACommunicator) {
  SAMBALM_REQUIRE_GPU();
  for (const std::string precision : {"fp32", "bf16"}) {
    const std::string dir = test::temp_dir("nccl_one_" + precision), data = test::write_word_text(dir);
    std::string out;
    ASSERT_EQ(sh(kEnv + train_args(data, dir + "/single", precision) + " --batch 4 --dist-backend single", &out), 0)
        << out;
    ASSERT_EQ(sh(kEnv + train_args(data, dir + "/nccl", precision) + " --batch 4 --dist-backend nccl", &out), 0)
        << out;
    EXPECT_NE(out.find("x 1 processes (nccl)"), std::string::npos) << out;
    test::worst_tensor_error(dir + "/nccl/model/model.safetensors", dir + "/single/model/model.safetensors", 1e-5);
  }
}

TEST(CudaNccl, TwoRanksOnOneGpuTrainOrStopClearly) {
  SAMBALM_REQUIRE_GPU();
  const std::string dir = test::temp_dir("nccl_two"), data = test::write_word_text(dir);
  std::string out;
  const std::string port = std::to_string(29500 + int(::getpid() % 1000));
  const std::string env = std::string(kEnv) + "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " ";
  const std::string args = train_args(data, dir + "/two", "fp32") + " --batch 2 --dist-timeout 60";
  // Rank 1 in the background, rank 0 here; each writes its own log.
  const int rc = sh("( " + env + "RANK=1 LOCAL_RANK=0 " + args + " > " + dir + "/rank1.log 2>&1; echo $? > " + dir +
                        "/rank1.rc ) & " + env + "RANK=0 LOCAL_RANK=0 " + args + "; wait",
                    &out);
  std::ifstream rc1f(dir + "/rank1.rc");
  int rc1 = -1;
  rc1f >> rc1;
  std::ifstream l1(dir + "/rank1.log");
  const std::string log1((std::istreambuf_iterator<char>(l1)), {});
  if (rc == 0 && rc1 == 0) {
    ASSERT_EQ(sh(kEnv + train_args(data, dir + "/one", "fp32") + " --batch 4 --dist-backend single", &out), 0) << out;
    test::worst_tensor_error(dir + "/two/model/model.safetensors", dir + "/one/model/model.safetensors", 1e-5);
  } else {
    std::printf("two ranks on one GPU refused:\n%s\n%s\n", out.c_str(), log1.c_str());
    EXPECT_NE(rc, 124) << "rank 0 hung:\n" << out;
    EXPECT_NE(rc1, 124) << "rank 1 hung:\n" << log1;
    EXPECT_NE((out + log1).find("NCCL"), std::string::npos) << out << log1;
  }
}

}  // namespace
}  // namespace sambalm
