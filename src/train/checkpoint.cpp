#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

constexpr const char* kStateFile = "trainer_state.safetensors";
constexpr const char* kFormat = "sambalm-trainer-state";
constexpr int kVersion = 1;

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems refuse directory fds
  ::fsync(fd);
  ::close(fd);
}

// step_00000600 -> 600; anything else (including *.tmp) -> nullopt.
std::optional<int64_t> parse_step(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() <= 5) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

Tensor f32_copy(const std::vector<float>& v) {
  Tensor t = Tensor::zeros(DType::F32, {static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

}  // namespace

std::string checkpoint_name(int64_t step) { return fmt::format("step_{:08}", step); }

std::string save_checkpoint(const std::string& run_dir, const ModelConfig& cfg, const ParamStore& params,
                            const TrainerState& state, int keep_last,
                            const std::map<std::string, std::string>& extra_files) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  fs::create_directories(root, ec);
  SAMBALM_CHECK(!ec, "{}: cannot create checkpoint directory: {}", root.string(), ec.message());
  // Leftovers of a save that was killed half-way.
  for (const auto& e : fs::directory_iterator(root))
    if (e.path().extension() == ".tmp") fs::remove_all(e.path(), ec);

  const std::string name = checkpoint_name(state.step);
  const fs::path tmp = root / (name + ".tmp"), final_dir = root / name;
  fs::create_directories(tmp, ec);
  SAMBALM_CHECK(!ec, "{}: cannot create: {}", tmp.string(), ec.message());

  save_model_dir(tmp.string(), cfg, params);
  for (const auto& [file, bytes] : extra_files) write_file_atomic((tmp / file).string(), bytes);

  SAMBALM_CHECK(state.exp_avg.size() == params.size() && state.exp_avg_sq.size() == params.size(),
                "{}: optimizer moments hold {} / {} values, expected {}", name, state.exp_avg.size(),
                state.exp_avg_sq.size(), params.size());
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"version", std::to_string(kVersion)},
      {"step", std::to_string(state.step)},
      {"adam_t", std::to_string(state.adam_t)},
      {"data", state.data.dump()},
      {"rng", state.rng},
      {"extra", state.extra.dump()},
  };
  write_safetensors((tmp / kStateFile).string(),
                    {{"adamw.exp_avg", f32_copy(state.exp_avg)}, {"adamw.exp_avg_sq", f32_copy(state.exp_avg_sq)}},
                    meta);
  fsync_dir(tmp.string());

  // A checkpoint of the same step (a run resumed from an older one re-reaching it) is replaced.
  if (fs::exists(final_dir)) fs::remove_all(final_dir, ec);
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0)
    fail("{}: rename to {} failed: {}", tmp.string(), final_dir.string(), std::strerror(errno));
  fsync_dir(root.string());

  if (keep_last > 0) {
    auto all = list_checkpoints(run_dir);
    for (size_t i = 0; i + keep_last < all.size(); ++i) fs::remove_all(all[i], ec);
  }
  return final_dir.string();
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (!e.is_directory()) continue;
    auto step = parse_step(e.path().filename().string());
    if (step && fs::exists(e.path() / kStateFile)) found.emplace_back(*step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [s, p] : found) out.push_back(p);
  return out;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

TrainerState load_trainer_state(const std::string& ckpt_dir, size_t n_params) {
  const std::string path = (fs::path(ckpt_dir) / kStateFile).string();
  SafetensorsFile f = read_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = f.metadata.find(key);
    SAMBALM_CHECK(it != f.metadata.end(), "{}: metadata key '{}' missing", path, key);
    return it->second;
  };
  SAMBALM_CHECK(meta("format") == kFormat, "{}: format '{}', expected '{}'", path, meta("format"), kFormat);
  SAMBALM_CHECK(meta("version") == std::to_string(kVersion), "{}: version {}, expected {}", path, meta("version"),
                kVersion);
  TrainerState s;
  try {
    s.step = std::stoll(meta("step"));
    s.adam_t = std::stoll(meta("adam_t"));
  } catch (const std::exception&) {
    fail("{}: step '{}' / adam_t '{}' are not integers", path, meta("step"), meta("adam_t"));
  }
  s.data = nlohmann::json::parse(meta("data"), nullptr, false);
  s.extra = nlohmann::json::parse(meta("extra"), nullptr, false);
  SAMBALM_CHECK(!s.data.is_discarded() && !s.extra.is_discarded(), "{}: metadata 'data'/'extra' is not JSON", path);
  s.rng = meta("rng");
  for (auto [key, dst] : {std::pair{"adamw.exp_avg", &s.exp_avg}, std::pair{"adamw.exp_avg_sq", &s.exp_avg_sq}}) {
    const Tensor& t = f.get(key);
    SAMBALM_CHECK(t.dtype() == DType::F32 && t.numel() == static_cast<int64_t>(n_params),
                  "{}: '{}' is {} {}, expected F32 [{}] (the model's parameter count)", path, key,
                  dtype_name(t.dtype()), shape_str(t.shape()), n_params);
    dst->assign(t.data<float>(), t.data<float>() + t.numel());
  }
  return s;
}

}  // namespace sambalm
