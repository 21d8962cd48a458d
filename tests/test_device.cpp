// --device parsing and opening: the accepted forms, and the errors a user sees on a machine or build
// without a GPU (a clear message saying what to change, never a crash).
#include <gtest/gtest.h>

#include "core/error.h"
#include "ops/device.h"
#include "testing.h"

#include <filesystem>

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
