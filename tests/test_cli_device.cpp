// --device and --dtype of generate, bench and forward on a machine without a GPU: the help lists them
// (and keeps --weights-dtype apart), a GPU that is not there is a clear error and exit 1, bf16 on the CPU
// and a malformed device are clear errors, and what runs on the CPU only is refused on cuda by name
// (with auto it runs on the CPU). The GPU side is tests/gpu/test_cuda_cli.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "ops/device.h"
#include "testing.h"

namespace sambalm {
namespace {

std::string samba() { return test::fixtures_dir() + "/samba_tiny"; }

// The three commands on the samba_tiny fixture, with `extra` options.
std::string generate(const std::string& extra) {
  return "generate -m " + samba() + " --prompt-ids 1,2,3 -n 2 -q " + extra;
}
std::string bench(const std::string& extra) {
  return "bench -m " + samba() + " --context 4 --decode-tokens 1 --warmup 0 " + extra;
}
std::string forward(const std::string& out, const std::string& extra) {
  return "forward -m " + samba() + " -i " + samba() + "/expected.safetensors -o " + out + " " + extra;
}

void expect_error(const std::string& args, const std::string& message) {
  std::string log;
  EXPECT_EQ(test::run_cli(args, &log), 1) << args << "\n" << log;
  EXPECT_NE(log.find("error: "), std::string::npos) << log;
  EXPECT_NE(log.find(message), std::string::npos) << args << "\n" << log;
}

TEST(CliDevice, HelpListsDeviceAndDtype) {
  for (const char* cmd : {"generate", "bench", "forward"}) {
    std::string help;
    ASSERT_EQ(test::run_cli(std::string(cmd) + " --help", &help), 0) << cmd;
    EXPECT_NE(help.find("--device"), std::string::npos) << cmd;
    EXPECT_NE(help.find("cuda:N"), std::string::npos) << cmd;
    EXPECT_NE(help.find("--dtype"), std::string::npos) << cmd;
    EXPECT_NE(help.find("bf16"), std::string::npos) << cmd;
    // --dtype is the GPU's precision; --weights-dtype stays the CPU's packed format, and --help says so.
    EXPECT_NE(help.find("--weights-dtype"), std::string::npos) << cmd;
    EXPECT_NE(help.find("its packed weight formats are --weights-dtype"), std::string::npos) << cmd;
  }
}

TEST(CliDevice, MissingGpuIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible";
  REQUIRE_FIXTURES();
  const std::string out = test::temp_dir("cli_device_nogpu") + "/out.safetensors";
  expect_error(generate("--device cuda"), "use --device cpu");
  expect_error(bench("--device cuda:0"), "use --device cpu");
  expect_error(forward(out, "--device cuda --dtype fp32"), "use --device cpu");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(CliDevice, Bf16OnTheCpuIsAClearError) {
  REQUIRE_FIXTURES();
  const std::string out = test::temp_dir("cli_device_bf16") + "/out.safetensors";
  expect_error(generate("--dtype bf16 --device cpu"), "--dtype bf16: the CPU computes in fp32 only");
  expect_error(bench("--dtype bf16 --device cpu"), "--dtype bf16: the CPU computes in fp32 only");
  expect_error(forward(out, "--dtype bf16 --device cpu"), "--dtype bf16: the CPU computes in fp32 only");
  // Without a GPU, auto is the CPU: bf16 is refused the same way.
  if (!cuda_available()) expect_error(generate("--dtype bf16"), "--dtype bf16: the CPU computes in fp32 only");
}

TEST(CliDevice, MalformedDeviceIsAClearError) {
  REQUIRE_FIXTURES();
  const std::string out = test::temp_dir("cli_device_bad") + "/out.safetensors";
  expect_error(generate("--device cuda:x"), "--device cuda:x: expected cpu, cuda, cuda:N");
  expect_error(bench("--device gpu"), "--device gpu: expected cpu, cuda, cuda:N");
  expect_error(forward(out, "--device cuda:-1"), "--device cuda:-1: expected cpu, cuda, cuda:N");
}

// Checked from the command line and the config before any device is opened, so the message is the
// same with or without a GPU.
TEST(CliDevice, CpuOnlyOptionsOnCudaAreRefusedByName) {
  REQUIRE_FIXTURES();
  const std::string out = test::temp_dir("cli_device_cpuonly") + "/out.safetensors";
  expect_error(generate("--device cuda --weights-dtype bf16"),
               "--device cuda: --weights-dtype bf16 does not run on the GPU yet");
  expect_error(bench("--device cuda --weights-dtype q8"), "--device cuda: --weights-dtype q8 does not run on the GPU");
  expect_error(bench("--device cuda --bandwidth"), "--device cuda: --bandwidth does not run on the GPU");
  expect_error(forward(out, "--device cuda --weights-dtype f16"), "--weights-dtype f16 does not run on the GPU");
  const std::string sambay = test::fixtures_dir() + "/sambay_tiny";
  expect_error("generate -m " + sambay + " --prompt-ids 1,2 -n 1 --device cuda", "SambaY model");
  expect_error("bench -m " + sambay + " --context 4 --device cuda", "does not run on the GPU yet");
}

// auto with an option that runs on the CPU only is the CPU, whether or not a GPU is visible: the output
// is the CPU's (and the default, auto, on a machine without a GPU is today's CPU run).
TEST(CliDevice, AutoWithCpuOnlyOptionsRunsOnTheCpu) {
  REQUIRE_FIXTURES();
  std::string cpu, with_auto;
  ASSERT_EQ(test::run_cli(generate("--device cpu --weights-dtype f32"), &cpu), 0) << cpu;
  ASSERT_EQ(test::run_cli(generate("--weights-dtype f32"), &with_auto), 0) << with_auto;
  EXPECT_EQ(cpu, with_auto);
  ASSERT_EQ(test::run_cli(generate("--device cpu --dtype fp32"), &with_auto), 0) << with_auto;
  EXPECT_EQ(cpu, with_auto);
  std::string table;
  ASSERT_EQ(test::run_cli(bench("--device cpu --dtype fp32"), &table), 0) << table;
  EXPECT_NE(table.find("decode t/s"), std::string::npos) << table;
}

}  // namespace
}  // namespace sambalm
