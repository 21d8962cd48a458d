// What `generate` and `bench` do before their work starts: the OpenMP thread count and how long idle
// threads spin,
// and checking that output paths can be written (so a bad path is reported before a long run, not
// after it).
#pragma once

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"

namespace sambalm::cli {

// libgomp's threads spin for a while (GOMP_SPINCOUNT, 300000 iterations by default) at every barrier
// before they sleep. A decode step runs dozens of short parallel regions, and on cores shared with
// other processes a long-spinning thread holds the core its preempted partner needs: on a loaded 2-core
// machine two threads decoded 17x slower than one. Sleeping at once (OMP_WAIT_POLICY=passive) avoids
// that but pays a wake-up at every region: 25% of a mamba-130m step on an idle machine. A short spin,
// GOMP_SPINCOUNT=10000 (some microseconds), keeps both: as fast as spinning when idle, faster than
// passive when loaded (docs/BENCHMARKS.md "Threads on shared cores"). libgomp reads these once, when it
// is loaded, so the default can only take effect in a new process image: unless the user chose a
// policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT set), this sets GOMP_SPINCOUNT and executes the same
// command line again. Call it before reading any input.
inline constexpr const char* kDefaultSpinCount = "10000";
inline void bound_openmp_spinning() {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  // Under valgrind the new image would run outside the tool: keep the policy there.
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload && std::strstr(preload, "vgpreload")) return;
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (cmdline.empty() || setenv("GOMP_SPINCOUNT", kDefaultSpinCount, 1) != 0) return;
  std::vector<char*> argv;
  for (size_t i = 0; i < cmdline.size(); i += std::strlen(cmdline.c_str() + i) + 1)
    argv.push_back(const_cast<char*>(cmdline.c_str() + i));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  execv(exe, argv.data());
  // Not reached unless exec failed: carry on with the policy the runtime already has.
}

// --threads: 0 (not given) keeps OpenMP's default (every core, or OMP_NUM_THREADS).
inline void apply_threads(int64_t threads) {
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
}

// Fails with the option's name when `path` cannot be written: a directory, a missing or read-only
// folder. Creates and removes the temporary file an atomic write would use (`path.tmp`).
inline void check_writable(const std::string& path, const char* option) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SAMBALM_CHECK(!fs::is_directory(path, ec), "{} {}: is a directory, expected a file name", option, path);
  const std::string tmp = path + ".tmp";
  const bool existed = fs::exists(tmp, ec);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{} {}: cannot be written: {}", option, path, std::strerror(errno));
  ::close(fd);
  if (!existed) ::unlink(tmp.c_str());
}

}  // namespace sambalm::cli
