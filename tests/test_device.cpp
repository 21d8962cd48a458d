// --device parsing and opening: the accepted forms, and the errors a user sees on a machine or build
// without a GPU (a clear message saying what to change, never a crash).
#include <gtest/gtest.h>

#include "core/error.h"
#include "ops/device.h"
#include "testing.h"

#include <filesystem>
#include <fstream>

namespace sambalm {
namespace {

TEST(Device, ParsesTheAcceptedForms) {
  EXPECT_EQ(parse_device("cpu").device, Device::CPU);
  EXPECT_EQ(parse_device("cuda").device, Device::CUDA);
  EXPECT_EQ(parse_device("cuda").index, 0);
  EXPECT_EQ(parse_device("cuda:3").index, 3);
  const DeviceSpec a = parse_device("auto");
  EXPECT_EQ(a.device, cuda_available() ? Device::CUDA : Device::CPU);
}

TEST(Device, RejectsMalformedValues) {
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "CPU", "cuda:99999999999"}) {
    try {
      parse_device(bad, "--device");
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("expected cpu, cuda, cuda:N"), std::string::npos) << e.what();
    }
  }
}

TEST(Device, CpuBackendIsTheCpuContext) {
  Backend b(parse_device("cpu"));
  EXPECT_EQ(b.context().device, Device::CPU);
  EXPECT_EQ(b.describe(), "cpu");
}

// Without a GPU (CI, and every machine without the CUDA backend), asking for one is an error that says
// to use the CPU; with GPUs, an index past the last one names how many there are.
TEST(Device, CudaWithoutAGpuOrOutOfRangeIsAClearError) {
  const int n = cuda_device_count();
  const DeviceSpec spec{Device::CUDA, n == 0 ? 0 : n};
  try {
    Backend b(spec);
    FAIL() << "opened cuda:" << spec.index << " with " << n << " GPUs";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (n == 0)
      EXPECT_NE(msg.find("use --device cpu"), std::string::npos) << msg;
    else
      EXPECT_NE(msg.find("this machine has"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace sambalm

namespace sambalm {
namespace {

// The command line: `forward --device cuda` on a machine without a GPU (or a build without the CUDA
// backend) fails before writing anything, saying to use the CPU.
TEST(Device, ForwardOnAMissingGpuIsAClearErrorAndWritesNothing) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible";
  REQUIRE_FIXTURES();
  const std::string dir = test::fixtures_dir() + "/samba_tiny";
  const std::string out = test::temp_dir("devfwd") + "/out.safetensors";
  std::string log;
  EXPECT_NE(test::run_cli("forward --model " + dir + " --inputs " + dir + "/expected.safetensors --out " + out +
                              " --device cuda",
                          &log),
            0);
  EXPECT_NE(log.find("use --device cpu"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_NE(test::run_cli("forward --model " + dir + " --inputs " + dir + "/expected.safetensors --out " + out +
                              " --device tpu",
                          &log),
            0);
  EXPECT_NE(log.find("--device tpu: expected cpu, cuda, cuda:N"), std::string::npos) << log;
}

}  // namespace
}  // namespace sambalm

namespace sambalm {
namespace {

// --precision: bf16 mixed precision is a GPU mode; the CPU computes in fp32 only.
TEST(Precision, AutoIsBf16OnAGpuAndFp32OnTheCpu) {
  EXPECT_EQ(parse_precision("auto", Device::CUDA), Precision::BF16);
  EXPECT_EQ(parse_precision("auto", Device::CPU), Precision::FP32);
  EXPECT_EQ(parse_precision("fp32", Device::CUDA), Precision::FP32);
  EXPECT_EQ(parse_precision("fp32", Device::CPU), Precision::FP32);
  EXPECT_EQ(parse_precision("bf16", Device::CUDA), Precision::BF16);
  EXPECT_STREQ(precision_name(Precision::BF16), "bf16");
  EXPECT_STREQ(precision_name(Precision::FP32), "fp32");
}

TEST(Precision, Bf16OnTheCpuOrAnUnknownValueIsAClearError) {
  try {
    parse_precision("bf16", Device::CPU);
    FAIL() << "bf16 accepted on the CPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--precision bf16: the CPU computes in fp32 only"), std::string::npos)
        << e.what();
  }
  for (const char* bad : {"", "fp16", "BF16", "float"}) {
    try {
      parse_precision(bad, Device::CUDA);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("expected bf16, fp32 or auto"), std::string::npos) << e.what();
    }
  }
}

// The command lines: train and forward with --device cpu --precision bf16 stop before doing anything.
TEST(Precision, TrainAndForwardRefuseBf16OnTheCpu) {
  REQUIRE_FIXTURES();
  const std::string tmp = test::temp_dir("precision_cpu");
  const std::string fx = test::fixtures_dir() + "/samba_tiny";
  std::string log;
  EXPECT_EQ(test::run_cli("forward --model " + fx + " --inputs " + fx + "/expected.safetensors --out " + tmp +
                              "/out.safetensors --device cpu --precision bf16",
                          &log),
            1);
  EXPECT_NE(log.find("--precision bf16: the CPU computes in fp32 only"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(tmp + "/out.safetensors"));
  {
    std::ofstream(tmp + "/data.txt") << std::string(4000, 'a');
  }
  EXPECT_EQ(test::run_cli("train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 "
                          "--tokenizer bytes --seq-len 16 --batch 2 --steps 1 --device cpu --precision bf16 --data " +
                              tmp + "/data.txt --out " + tmp + "/run",
                          &log),
            1);
  EXPECT_NE(log.find("--precision bf16: the CPU computes in fp32 only"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(tmp + "/run/metrics.jsonl"));
  // An unknown value is refused by the option itself.
  EXPECT_NE(test::run_cli("train --model Samba_421M --precision fp16 --data " + tmp + "/data.txt --out " + tmp + "/r2",
                          &log),
            0);
  EXPECT_NE(log.find("--precision"), std::string::npos) << log;
}

}  // namespace
}  // namespace sambalm
