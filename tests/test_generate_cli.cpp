// `sambalm generate` and `bench` as a user meets them: random weights said so, non-finite weights and
// logits refused, sampling when a temperature is given, Ctrl-C keeping what was generated (text, JSON,
// interactive replies), interactive commands that fail without ending the session, states continued
// without a prompt, the full-attention cache and the memory of a batch checked before decoding,
// prompts from standard input, output paths checked before the work, and --threads.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/model_dir.h"
#include "model/weights.h"
#include "testing.h"

using namespace sambalm;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A random 2-layer Samba over bytes (vocab 256); `edit` may change the config or the parameters
// before it is saved. Returns the model directory.
template <typename Edit>
std::string byte_model(const std::string& dir, Edit edit) {
  test::SambaShape sh;
  sh.n_layer = 2;
  sh.vocab = 256;
  sh.padded = 256;
  sh.window = 4;
  ModelConfig cfg = test::small_samba("gen_cli_bytes", sh);
  ParamStore store;
  edit(cfg, store);
  if (store.entries().empty()) {
    store = ParamStore(param_specs(cfg));
    test::fill_random_params(store, 5);
  }
  save_model_dir(dir, cfg, store);
  return dir;
}
std::string byte_model(const std::string& dir) {
  return byte_model(dir, [](ModelConfig&, ParamStore&) {});
}

// A child process running the CLI: stdin from a pipe, stdout and stderr to files.
struct Child {
  pid_t pid = -1;
  int in = -1;
  std::string out, err;

  Child(const std::vector<std::string>& args, const std::string& dir) : out(dir + "/out.txt"), err(dir + "/err.txt") {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
      dup2(fds[0], 0);
      close(fds[0]);
      close(fds[1]);
      dup2(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 1);
      dup2(open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
      std::vector<char*> argv = {const_cast<char*>(SAMBALM_CLI_PATH)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(SAMBALM_CLI_PATH, argv.data());
      _exit(127);
    }
    close(fds[0]);
    in = fds[1];
  }
  ~Child() {
    if (in >= 0) close(in);
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  void write_in(const std::string& s) { ASSERT_EQ(write(in, s.data(), s.size()), ssize_t(s.size())); }
  void close_in() {
    close(in);
    in = -1;
  }
  // Process CPU seconds so far (user + system), from /proc.
  double cpu_seconds() const {
    const std::string stat = read_all("/proc/" + std::to_string(pid) + "/stat");
    std::istringstream ss(stat.substr(stat.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && ss >> field; ++i)
      if (i >= 14) ticks += std::stod(field);
    return ticks / double(sysconf(_SC_CLK_TCK));
  }
  // Waits (at most a minute) until `ready` holds; false when the child ended first or time ran out.
  template <typename F>
  bool wait_until(F ready) const {
    for (int i = 0; i < 6000; ++i) {
      if (ready()) return true;
      if (waitpid(pid, nullptr, WNOHANG) != 0) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  // Exit status as a shell reports it (128 + signal when killed); -1 after a minute.
  int wait_exit() {
    for (int i = 0; i < 6000; ++i) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
};

std::vector<int32_t> json_ids(const std::string& out) {
  return nlohmann::json::parse(out)["results"][0]["ids"].get<std::vector<int32_t>>();
}

}  // namespace

TEST(GenerateCli, RandomWeightsAreSaidSo) {
  // A preset name or a bare config gives random parameters: generate warns, and --help says so.
  const std::string dir = test::temp_dir("gen_random");
  byte_model(dir + "/m");
  std::string out;
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/m/config.json --tokenizer bytes -p ab -n 2 -q", &out), 0) << out;
  EXPECT_NE(out.find("random"), std::string::npos) << out;
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/m --tokenizer bytes -p ab -n 2 -q", &out), 0) << out;
  EXPECT_EQ(out.find("random"), std::string::npos) << out;  // trained weights: no warning
  ASSERT_EQ(test::run_cli("generate --help", &out), 0);
  EXPECT_NE(out.find("preset name or config .json gives random weights"), std::string::npos) << out;
}

TEST(GenerateCli, NonFiniteWeightsAreRefusedAtLoad) {
  const std::string dir = test::temp_dir("gen_nan");
  byte_model(dir + "/m", [](ModelConfig& cfg, ParamStore& store) {
    store = ParamStore(param_specs(cfg));
    test::fill_random_params(store, 5);
    store.get("blocks.0.0.in_proj.weight")[7] = std::numeric_limits<float>::quiet_NaN();
  });
  std::string out;
  EXPECT_EQ(test::run_cli("generate -m " + dir + "/m --tokenizer bytes -p ab -n 4", &out), 1) << out;
  EXPECT_NE(out.find("non-finite"), std::string::npos) << out;
  EXPECT_NE(out.find("in_proj"), std::string::npos) << out;
}

TEST(GenerateCli, NonFiniteLogitsStopTheRun) {
  // Finite weights whose product overflows: the final norm's gain at 1e38 makes the logits infinite.
  const std::string dir = test::temp_dir("gen_inf");
  byte_model(dir + "/m", [](ModelConfig& cfg, ParamStore& store) {
    store = ParamStore(param_specs(cfg));
    test::fill_random_params(store, 5);
    for (auto& e : store.entries())
      if (e.name.rfind("final_norm", 0) == 0)
        for (int64_t i = 0; i < e.numel(); ++i) store.data()[e.offset + i] = 1e38f;
  });
  std::string out;
  EXPECT_EQ(test::run_cli("generate -m " + dir + "/m --tokenizer bytes -p ab -n 4 -q", &out), 1) << out;
  EXPECT_NE(out.find("not finite"), std::string::npos) << out;
}

TEST(GenerateCli, TemperatureAloneSamples) {
  // --temperature 0.8 alone samples (top-k off unless given); an explicit --top-k 1 stays greedy.
  const std::string dir = test::temp_dir("gen_temp");
  const std::string m = byte_model(dir + "/m");
  const std::string base = "generate -m " + m + " --tokenizer bytes --prompt-ids 1,2 -n 40 --ignore-eos --json -q ";
  std::string out;
  ASSERT_EQ(test::run_cli(base + "--temperature 0", &out), 0) << out;
  const auto greedy = json_ids(out);
  ASSERT_EQ(test::run_cli(base + "--temperature 0.8 --seed 1", &out), 0) << out;
  const auto sampled = json_ids(out);
  ASSERT_EQ(test::run_cli(base + "--temperature 0.8 --seed 1 --top-k 1", &out), 0) << out;
  EXPECT_EQ(json_ids(out), greedy);
  EXPECT_NE(sampled, greedy);
  ASSERT_EQ(test::run_cli(base + "--temperature 0.8 --seed 1", &out), 0) << out;
  EXPECT_EQ(json_ids(out), sampled);  // still seeded
}

TEST(GenerateCli, ThreadsOption) {
  const std::string dir = test::temp_dir("gen_threads");
  const std::string m = byte_model(dir + "/m");
  std::string out;
  ASSERT_EQ(test::run_cli("generate -m " + m + " --tokenizer bytes -p ab -n 3 -q --threads 1", &out), 0) << out;
  ASSERT_EQ(
      test::run_cli("bench -m " + m + " --context 8 --decode-tokens 2 --warmup 0 --threads 1 --json " + dir + "/b.json",
                    &out),
      0)
      << out;
  EXPECT_EQ(nlohmann::json::parse(read_all(dir + "/b.json"))["threads"], 1);
}

TEST(GenerateCli, InteractiveCommandsFailWithoutEndingTheSession) {
  // A bare /save, an unknown command and an unwritable /save are errors; /reset confirms; none of
  // them reaches the model, and the turn after them is answered as in a fresh session.
  const std::string dir = test::temp_dir("gen_icmd");
  const std::string m = byte_model(dir + "/m");
  std::ofstream(dir + "/in.txt") << "/save\n/bogus x\n/save " << dir << "/no/such/dir/x.st\n/reset\none \n/quit\n";
  const std::string opts = " --tokenizer bytes -n 6 --temperature 0 --ignore-eos ";
  const std::string cmd = std::string(SAMBALM_CLI_PATH) + " generate -m " + m + opts + "-i < " + dir + "/in.txt > " +
                          dir + "/out.txt 2> " + dir + "/err.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_all(dir + "/err.txt");
  const std::string err = read_all(dir + "/err.txt");
  EXPECT_NE(err.find("/save needs a file name"), std::string::npos) << err;
  EXPECT_NE(err.find("unknown command '/bogus'"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot create"), std::string::npos) << err;
  EXPECT_NE(err.find("context cleared"), std::string::npos) << err;
  std::ofstream(dir + "/one.txt") << "one \n";
  std::string reply;
  ASSERT_EQ(test::run_cli("generate -m " + m + opts + "-q -f " + dir + "/one.txt", &reply), 0) << reply;
  EXPECT_EQ(read_all(dir + "/out.txt"), reply);  // the only model text: the reply to "one "

  std::string out;
  EXPECT_EQ(test::run_cli("generate -m " + m + opts + "-i --json < /dev/null", &out), 1) << out;
  EXPECT_NE(out.find("--json cannot be combined with -i"), std::string::npos) << out;
  EXPECT_EQ(test::run_cli("generate -m " + m + opts + "-i --batch 2 < /dev/null", &out), 1) << out;
  EXPECT_NE(out.find("--batch"), std::string::npos) << out;
}

TEST(GenerateCli, CtrlCStopsTheReplyNotTheSession) {
  const std::string dir = test::temp_dir("gen_isig");
  const std::string m = byte_model(dir + "/m");
  Child c({"generate", "-m", m, "--tokenizer", "bytes", "-i", "-n", "1000000000", "--ignore-eos", "--temperature", "0"},
          dir);
  c.write_in("hello\n");
  ASSERT_TRUE(c.wait_until([&] { return !read_all(c.out).empty(); })) << read_all(c.err);  // replying
  kill(c.pid, SIGINT);
  c.write_in("/save " + dir + "/after.st\n/quit\n");
  c.close_in();
  EXPECT_EQ(c.wait_exit(), 0) << read_all(c.err);
  EXPECT_NE(read_all(c.err).find("[reply stopped]"), std::string::npos) << read_all(c.err);
  EXPECT_TRUE(std::filesystem::exists(dir + "/after.st"));  // the session went on after the Ctrl-C
}

TEST(GenerateCli, CtrlCDuringJsonPrintsWhatWasGenerated) {
  const std::string dir = test::temp_dir("gen_jsig");
  const std::string m = byte_model(dir + "/m");
  Child c({"generate", "-m", m, "--tokenizer", "bytes", "-p", "ab", "-n", "1000000000", "--ignore-eos", "--json"}, dir);
  c.close_in();
  // Generating once it has used half a second of CPU (loading this model takes milliseconds).
  ASSERT_TRUE(c.wait_until([&] { return c.cpu_seconds() >= 0.5; })) << read_all(c.err);
  kill(c.pid, SIGINT);
  EXPECT_EQ(c.wait_exit(), 130) << read_all(c.err);
  const std::string out = read_all(c.out);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(out)) << out;
  EXPECT_EQ(j["results"][0]["stop_reason"], "interrupted");
  const auto n = j["results"][0]["ids"].size();
  EXPECT_GT(n, 0u);
  EXPECT_EQ(j["stats"]["generated_tokens"], n);
  EXPECT_EQ(j["results"][0]["text"].get<std::string>().empty(), false);
}

TEST(GenerateCli, LoadedStateContinuesWithoutAPrompt) {
  const std::string dir = test::temp_dir("gen_cont");
  const std::string m = byte_model(dir + "/m");
  const std::string base = "generate -m " + m + " --tokenizer bytes --ignore-eos --temperature 0 --json -q ";
  std::string out;
  ASSERT_EQ(test::run_cli(base + "--prompt-ids 1,2,3 -n 10", &out), 0) << out;
  const auto whole = json_ids(out);
  ASSERT_EQ(test::run_cli(base + "--prompt-ids 1,2,3 -n 4 --save-state " + dir + "/s.st", &out), 0) << out;
  auto joined = json_ids(out);
  ASSERT_EQ(test::run_cli(base + "--load-state " + dir + "/s.st -n 6", &out), 0) << out;
  const auto rest = json_ids(out);
  joined.insert(joined.end(), rest.begin(), rest.end());
  EXPECT_EQ(joined, whole);
  // Text output too, the way a user continues a document.
  ASSERT_EQ(test::run_cli("generate -m " + m + " --tokenizer bytes --load-state " + dir + "/s.st -n 6 -q", &out), 0)
      << out;
}

TEST(GenerateCli, FullAttentionCacheIsCheckedBeforeGenerating) {
  const std::string dir = test::temp_dir("gen_full");
  const std::string m = byte_model(dir + "/m", [](ModelConfig& cfg, ParamStore&) {
    cfg.local_window = -1;  // full attention
    cfg.block_size = 32;
  });
  std::string out;
  EXPECT_EQ(test::run_cli("generate -m " + m + " --tokenizer bytes -p ab -n 100 --ignore-eos", &out), 1) << out;
  EXPECT_NE(out.find("--max-context"), std::string::npos) << out;
  EXPECT_EQ(out.find("prompt tokens"), std::string::npos) << out;  // refused before generating anything
  EXPECT_EQ(out.rfind("error:", 0), 0u) << out;                    // nothing printed before the error
  EXPECT_EQ(
      test::run_cli("generate -m " + m + " --tokenizer bytes -p ab -n 100 --ignore-eos --max-context 128 -q", &out), 0)
      << out;
}

TEST(GenerateCli, BatchThatCannotFitIsRefusedBeforeAllocating) {
  // A window of 2^20 positions: 32 MiB of keys and values per sequence; 65536 of them cannot fit.
  const std::string dir = test::temp_dir("gen_mem");
  const std::string m = byte_model(dir + "/m", [](ModelConfig& cfg, ParamStore&) { cfg.local_window = 1 << 20; });
  std::string out;
  EXPECT_EQ(test::run_cli("generate -m " + m + " --tokenizer bytes -p ab -n 2 --batch 65536", &out), 1) << out;
  EXPECT_NE(out.find("of memory available"), std::string::npos) << out;
  EXPECT_NE(out.find("attention caches"), std::string::npos) << out;
}

TEST(GenerateCli, PromptFromStandardInput) {
  const std::string dir = test::temp_dir("gen_stdin");
  const std::string m = byte_model(dir + "/m");
  const std::string base = "generate -m " + m + " --tokenizer bytes -n 8 --temperature 0 --json -q ";
  std::string a, b;
  ASSERT_EQ(test::run_cli(base + "-p 'hello there'", &a), 0) << a;
  ASSERT_EQ(test::run_cli(base + "-f - < /dev/null", &b), 1) << b;  // empty input: an empty prompt
  std::ofstream(dir + "/p.txt") << "hello there";
  ASSERT_EQ(test::run_cli(base + "-f - < " + dir + "/p.txt", &b), 0) << b;
  auto ja = nlohmann::json::parse(a), jb = nlohmann::json::parse(b);
  EXPECT_EQ(jb["results"], ja["results"]);
}

TEST(GenerateCli, OutputPathsAreCheckedBeforeTheWork) {
  const std::string dir = test::temp_dir("gen_paths");
  const std::string m = byte_model(dir + "/m");
  std::string out;
  EXPECT_EQ(test::run_cli("generate -m " + m + " --tokenizer bytes -p ab -n 4 --save-state " + dir + "/no/x.st", &out),
            1)
      << out;
  EXPECT_NE(out.find("--save-state"), std::string::npos) << out;
  EXPECT_EQ(out.find("prompt tokens"), std::string::npos) << out;  // nothing was generated
  EXPECT_EQ(test::run_cli("generate -m " + m + " --tokenizer bytes -p ab -n 4 --save-state " + dir, &out), 1) << out;
  EXPECT_NE(out.find("is a directory"), std::string::npos) << out;
  EXPECT_EQ(test::run_cli("bench -m " + m + " --context 8 --decode-tokens 2 --json " + dir + "/no/b.json", &out), 1)
      << out;
  EXPECT_NE(out.find("--json"), std::string::npos) << out;
  EXPECT_EQ(out.find("decode t/s"), std::string::npos) << out;  // no table: nothing was measured
}
