#include "testing.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "infer/decode_model.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/weights.h"

namespace sambalm::test {

std::string fixtures_dir() {
  if (const char* e = std::getenv("SAMBALM_FIXTURES")) return e;
  return std::string(SAMBALM_SHARED_DIR) + "/fixtures";
}

bool fixtures_available() { return std::filesystem::exists(fixtures_dir() + "/samba_tiny/config.json"); }

std::vector<int32_t> ids_of(const Tensor& t) {
  std::vector<int32_t> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<int32_t>(t.data<int64_t>()[i]);
  return v;
}

ModelFixture load_model_fixture(const std::string& name) {
  ModelFixture f;
  f.dir = fixtures_dir() + "/" + name;
  f.cfg = ModelConfig::from_json_file(f.dir + "/config.json");
  f.state_dict = read_state_dict(f.dir + "/model.safetensors");
  f.params = load_params(f.cfg, f.state_dict, f.dir + "/model.safetensors");
  f.expected = read_safetensors(f.dir + "/expected.safetensors");
  const Tensor& in = f.expected.get("input_ids");
  f.B = in.dim(0);
  f.T = in.dim(1);
  f.tokens = ids_of(in);
  if (f.expected.has("targets")) f.targets = ids_of(f.expected.get("targets"));
  return f;
}

void expect_fixture_grads(const ModelFixture& fx, const ParamStore& grads, const std::string& what) {
  const WeightFormat fmt = detect_weight_format(fx.state_dict, fx.dir);
  std::set<std::string> compared;
  for (auto& [ext_name, g] : export_params(fx.cfg, grads, fmt)) {
    if (!fx.expected.has("grad." + ext_name)) continue;
    const Tensor& eg = fx.expected.get("grad." + ext_name);
    ASSERT_EQ(eg.numel(), g.numel()) << ext_name;
    EXPECT_LT(rel_error(g.data<float>(), eg.data<float>(), g.numel()), 1e-3) << what << " grad." << ext_name;
    compared.insert(ext_name);
  }
  for (auto& key : fx.expected.order) {
    if (key.rfind("grad.", 0) == 0) {
      EXPECT_TRUE(compared.count(key.substr(5))) << what << ": " << key << " not compared";
    }
  }
}

double rel_error(const float* a, const float* b, int64_t n) {
  double maxdiff = 0, maxb = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(d)) return INFINITY;
    maxdiff = std::max(maxdiff, d);
    maxb = std::max(maxb, std::fabs(double(b[i])));
  }
  return maxb > 0 ? maxdiff / maxb : maxdiff;
}

double rel_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  if (a.numel() != b.numel()) return INFINITY;
  Tensor fa = a.to_f32(), fb = b.to_f32();
  return rel_error(fa.data<float>(), fb.data<float>(), a.numel());
}

namespace {
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    for (auto& d : dirs) {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  }
};
TempDirs g_temp_dirs;
}  // namespace

std::vector<float> decode_logits(DecodeModel& dm, const std::vector<int32_t>& tok, int64_t B, int64_t Tn,
                                 const std::vector<int64_t>& splits) {
  const int64_t V = dm.vocab();
  std::vector<DecodeState> states;
  for (int64_t b = 0; b < B; ++b) states.push_back(dm.new_state());
  std::vector<float> got(B * Tn * V, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    dm.prefill(states[b], tok.data() + b * Tn, splits[b], got.data() + b * Tn * V, nullptr);
  std::vector<float> logits(B * V);
  std::vector<int32_t> step_tok(B);
  for (;;) {
    std::vector<DecodeState*> active;
    std::vector<int64_t> which, at;
    for (int64_t b = 0; b < B; ++b)
      if (states[b].pos() < Tn) {
        step_tok[active.size()] = tok[b * Tn + states[b].pos()];
        active.push_back(&states[b]);
        which.push_back(b);
        at.push_back(states[b].pos());
      }
    if (active.empty()) break;
    dm.step(active.data(), int64_t(active.size()), step_tok.data(), logits.data());
    for (size_t i = 0; i < which.size(); ++i)
      std::copy_n(logits.data() + i * V, V, got.data() + (which[i] * Tn + at[i]) * V);
  }
  return got;
}

std::string temp_dir(const std::string& tag) {
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int i = 0; i < 100; ++i) {
    auto p = base / ("sambalm_test_" + tag + "_" + std::to_string(rd()));
    if (std::filesystem::create_directory(p)) {
      g_temp_dirs.dirs.push_back(p.string());
      return p.string();
    }
  }
  throw std::runtime_error("cannot create temp dir");
}

std::map<std::string, std::string> write_shards(const std::string& safetensors_path, const std::string& dir,
                                                int n_shards) {
  auto st = read_safetensors(safetensors_path);
  const size_t n = st.order.size();
  std::map<std::string, std::string> weight_map;
  for (int s = 0; s < n_shards; ++s) {
    const std::string shard = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, n_shards);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (size_t i = n * s / n_shards; i < n * (s + 1) / n_shards; ++i) {
      tensors.emplace_back(st.order[i], st.get(st.order[i]));
      weight_map[st.order[i]] = shard;
    }
    write_safetensors(dir + "/" + shard, tensors, {{"format", "pt"}});
  }
  int64_t total = 0;
  for (const auto& [name, t] : st.tensors) total += static_cast<int64_t>(t.nbytes());
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2));
  return weight_map;
}

int run_cli(const std::string& args, std::string* output) { return sh(std::string(SAMBALM_CLI_PATH) + " " + args, output); }

int sh(const std::string& command, std::string* output) {
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t k;
  while ((k = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), k);
  int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<std::string> split_args(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> a;
  for (std::string w; in >> w;) a.push_back(w);
  return a;
}

pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    std::vector<char*> argv;
    std::string prog = SAMBALM_CLI_PATH;
    argv.push_back(prog.data());
    for (auto& s : const_cast<std::vector<std::string>&>(args)) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(prog.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

double worst_tensor_error(const std::string& a_path, const std::string& b_path, double tol) {
  SafetensorsFile a = read_safetensors(a_path), b = read_safetensors(b_path);
  double worst = 0;
  EXPECT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : b.tensors) {
    if (!a.tensors.count(name)) {
      ADD_FAILURE() << name << " missing in " << a_path;
      continue;
    }
    const double e = rel_error(a.tensors.at(name), t);
    EXPECT_LE(e, tol) << name << " in " << a_path;
    worst = std::max(worst, e);
  }
  std::printf("worst relative error per tensor %.3g: %s vs %s\n", worst, a_path.c_str(), b_path.c_str());
  return worst;
}

std::string write_word_text(const std::string& dir, size_t bytes) {
  std::mt19937 g(5);
  const char* words[] = {"mamba", "scan", "state", "of", "the", "window", "and", "token"};
  std::string s;
  while (s.size() < bytes) s += std::string(words[g() % 8]) + ((g() % 7) ? " " : ".\n");
  std::ofstream(dir + "/data.txt") << s;
  return dir + "/data.txt";
}

ModelConfig small_samba(const std::string& name, const SambaShape& s) {
  ModelConfig c;
  c.name = name;
  c.n_layer = s.n_layer;
  c.n_embd = s.d;
  c.n_head = s.heads;
  c.n_query_groups = s.groups;
  c.head_size = s.head_size;
  c.intermediate_size = s.mlp;
  c.vocab_size = s.vocab;
  c.padded_vocab_size = s.padded;
  c.local_window = s.window;
  c.mb_per_layer = 2;
  c.mamba_init = true;
  c.tied_embeddings = true;
  if (s.d_state > 0) c.d_state = s.d_state;
  if (s.dt_rank > 0) c.dt_rank = s.dt_rank;
  return c;
}

void fill_random_params(ParamStore& store, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  for (auto& e : store.entries()) {
    float* p = store.data() + e.offset;
    for (int64_t i = 0; i < e.numel(); ++i) {
      float v = nd(rng);
      if (e.name.find("norm.weight") != std::string::npos) v = 1.0f + v;
      if (e.name.find("A_log") != std::string::npos) v = std::log(1.0f + float(i % 8)) + 0.1f * v;
      if (e.name.find("dt_proj.bias") != std::string::npos) v = -3.0f + v;
      p[i] = v;
    }
  }
}

}  // namespace sambalm::test
