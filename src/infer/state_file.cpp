// Decode state file, little-endian (docs/FORMATS.md "Decode state file"):
//   magic "SBDSTATE" | u32 version (1) | u32 header length | header JSON |
//   i32 tokens[n_tokens] | f32 state[state_floats] | u64 FNV-1a of every byte before it
#include "infer/state_file.h"

#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/json_field.h"

namespace sambalm {

namespace {

constexpr char kMagic[8] = {'S', 'B', 'D', 'S', 'T', 'A', 'T', 'E'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull, kFnvPrime = 0x100000001b3ull;

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

std::string hex(uint64_t v) { return fmt::format("{:016x}", v); }

// Appends raw bytes to `out` and to the running checksum.
struct HashedWriter {
  AtomicWriter& w;
  uint64_t h = kFnvBasis;
  void put(const void* data, size_t n) {
    h = fnv1a(h, data, n);
    w.write(data, n);
  }
};

}  // namespace

uint64_t config_fingerprint(const ModelConfig& cfg) {
  nlohmann::json j = cfg.to_json();
  j.erase("name");  // a renamed copy of the same model is the same model
  const std::string s = j.dump();
  return fnv1a(kFnvBasis, s.data(), s.size());
}

// A sample of the float32 buffer and of each packed matrix's bytes (so a state saved with one weight
// format is refused by a model in another: their logits differ).
static uint64_t weights_hash(const float* params, int64_t n, const std::vector<ParamEntry>& entries) {
  const int64_t stride = std::max<int64_t>(1, n / (int64_t(1) << 20));
  uint64_t h = fnv1a(kFnvBasis, &n, sizeof(n));
  for (int64_t i = 0; i < n; i += stride) h = fnv1a(h, params + i, sizeof(float));
  for (const auto& e : entries) {
    if (!e.packed) continue;
    const int64_t bytes = e.packed->data_bytes();
    const int64_t step = std::max<int64_t>(1, bytes / 4096);
    h = fnv1a(h, &e.packed->format, 1);
    for (int64_t i = 0; i < bytes; i += step) h = fnv1a(h, static_cast<const uint8_t*>(e.packed->data) + i, 1);
    if (e.packed->scales) h = fnv1a(h, e.packed->scales, sizeof(float));
  }
  return h;
}

DecodeStateTarget decode_state_target(const DecodeModel& model) {
  return {model.config().name,
          config_fingerprint(model.config()),
          weights_hash(model.params(), model.param_floats(), model.entries()),
          model.layout()->floats,
          model.layout()->max_context,
          model.vocab()};
}

DecodeStateTarget decode_state_target(const ModelConfig& cfg, const std::vector<ParamEntry>& entries,
                                      const float* host_params, int64_t param_floats, const DecodeLayout& layout) {
  return {cfg.name,      config_fingerprint(cfg), weights_hash(host_params, param_floats, entries),
          layout.floats, layout.max_context,      cfg.padded_vocab_size};
}

void save_decode_state(const std::string& path, const DecodeModel& model, const DecodeState& st,
                       std::span<const int32_t> tokens, size_t n_pending) {
  SAMBALM_CHECK(st.layout_ptr() == model.layout(), "{}: the decode state belongs to another model", path);
  save_decode_state(path, decode_state_target(model), st, tokens, n_pending);
}

void save_decode_state(const std::string& path, const DecodeStateTarget& model, const DecodeState& st,
                       std::span<const int32_t> tokens, size_t n_pending) {
  SAMBALM_CHECK(st.valid() && st.floats() == model.floats && st.layout().max_context == model.max_context,
                "{}: the decode state belongs to another model", path);
  SAMBALM_CHECK(n_pending <= tokens.size(), "{}: {} pending ids of {} tokens", path, n_pending, tokens.size());
  nlohmann::json h;
  h["format"] = "sambalm-decode-state";
  h["model"] = model.model_name;
  h["config_hash"] = hex(model.config_hash);
  h["weights_hash"] = hex(model.weights_hash);
  h["pos"] = st.pos();
  h["n_tokens"] = tokens.size();
  if (n_pending > 0) h["n_pending"] = n_pending;
  h["state_floats"] = st.floats();
  h["padded_vocab"] = model.padded_vocab;
  h["max_context"] = model.max_context;
  const std::string header = h.dump();
  AtomicWriter w(path);
  HashedWriter hw{w};
  const uint32_t version = kVersion, hlen = static_cast<uint32_t>(header.size());
  hw.put(kMagic, sizeof(kMagic));
  hw.put(&version, 4);
  hw.put(&hlen, 4);
  hw.put(header.data(), header.size());
  hw.put(tokens.data(), tokens.size() * sizeof(int32_t));
  std::vector<float> body(static_cast<size_t>(st.floats()));
  st.copy_out(body.data());
  hw.put(body.data(), body.size() * sizeof(float));
  const uint64_t sum = hw.h;
  w.write(&sum, sizeof(sum));
  w.commit();
}

void load_decode_state(const std::string& path, const DecodeModel& model, DecodeState& st, std::vector<int32_t>& tokens,
                       std::vector<int32_t>* pending) {
  SAMBALM_CHECK(st.layout_ptr() == model.layout(), "{}: the target decode state belongs to another model", path);
  load_decode_state(path, decode_state_target(model), st, tokens, pending);
}

void load_decode_state(const std::string& path, const DecodeStateTarget& model, DecodeState& st,
                       std::vector<int32_t>& tokens, std::vector<int32_t>* pending) {
  SAMBALM_CHECK(st.valid() && st.floats() == model.floats && st.layout().max_context == model.max_context,
                "{}: the target decode state belongs to another model", path);
  auto f = MappedFile::open(path);
  std::vector<float> state(static_cast<size_t>(st.floats()));
  std::vector<int32_t> ids;
  int64_t n_pending = 0;
  const int64_t pos = parse_decode_state(f->data(), f->size(), path, model, state.data(), ids, &n_pending);
  st.copy_in(state.data());
  st.set_pos(pos);
  if (pending) pending->assign(ids.end() - n_pending, ids.end());
  tokens = std::move(ids);
}

int64_t parse_decode_state(const uint8_t* p, size_t size, const std::string& path, const DecodeStateTarget& want,
                           float* state, std::vector<int32_t>& tokens, int64_t* n_pending_out) {
  SAMBALM_CHECK(size >= 16 && std::memcmp(p, kMagic, 8) == 0, "{}: not a sambalm decode state file (bad magic)", path);
  uint32_t version = 0, hlen = 0;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&hlen, p + 12, 4);
  SAMBALM_CHECK(version == kVersion, "{}: decode state file version {}, expected {}", path, version, kVersion);
  SAMBALM_CHECK(16 + size_t(hlen) + 8 <= size, "{}: truncated (header of {} bytes in a file of {})", path, hlen, size);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(p + 16), hlen));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: header is not valid JSON ({})", path, e.what());
  }
  int64_t pos = 0, n_tokens = 0, floats = 0, vocab = 0, max_context = 0, n_pending = 0;
  std::string name, config_hash, weights_hash;
  try {
    pos = json_int64(h, "pos", path);
    n_tokens = json_int64(h, "n_tokens", path);
    floats = json_int64(h, "state_floats", path);
    vocab = json_int64(h, "padded_vocab", path);
    max_context = json_int64(h, "max_context", path);
    n_pending = json_int64_or(h, "n_pending", 0, path);  // optional: files without it have none
    name = h.at("model").get<std::string>();
    config_hash = h.at("config_hash").get<std::string>();
    weights_hash = h.at("weights_hash").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: header field missing or of the wrong type ({})", path, e.what());
  }
  const std::string want_config = hex(want.config_hash);
  SAMBALM_CHECK(config_hash == want_config,
                "{}: state of another model: written for '{}' (config hash {}), this model is '{}' (config hash {})",
                path, name, config_hash, want.model_name, want_config);
  const std::string want_weights = hex(want.weights_hash);
  SAMBALM_CHECK(weights_hash == want_weights,
                "{}: state of the same architecture but other weights (weights hash {}, this model's {})", path,
                weights_hash, want_weights);
  SAMBALM_CHECK(floats == want.floats && max_context == want.max_context,
                "{}: state has {} floats for max context {}, this model's state has {} for max context {} "
                "(use the same --max-context)",
                path, floats, max_context, want.floats, want.max_context);
  SAMBALM_CHECK(vocab == want.padded_vocab, "{}: padded vocabulary {}, model has {}", path, vocab, want.padded_vocab);
  SAMBALM_CHECK(pos >= 0 && n_tokens >= 0 && n_pending >= 0 && n_pending <= n_tokens && n_tokens - n_pending <= pos,
                "{}: bad positions (pos {}, n_tokens {}, n_pending {})", path, pos, n_tokens, n_pending);
  // The token count is compared with what the file can hold before it is multiplied: n_tokens * 4
  // could wrap around (2^62 tokens "fit" in 0 bytes) and the ids vector would then be sized from it.
  const size_t body = 16 + size_t(hlen), room = size - body - 8;
  SAMBALM_CHECK(uint64_t(n_tokens) <= room / 4 && uint64_t(floats) <= room / 4 &&
                    size_t(n_tokens) * 4 + size_t(floats) * 4 == room,
                "{}: file has {} bytes, the header implies {} tokens and {} state floats", path, size, n_tokens,
                floats);
  uint64_t sum = 0;
  std::memcpy(&sum, p + size - 8, 8);
  SAMBALM_CHECK(fnv1a(kFnvBasis, p, size - 8) == sum, "{}: checksum mismatch (file damaged)", path);
  std::vector<int32_t> ids(static_cast<size_t>(n_tokens));
  if (!ids.empty()) std::memcpy(ids.data(), p + body, ids.size() * 4);  // data() of an empty vector may be null
  for (int64_t i = 0; i < n_tokens; ++i)
    SAMBALM_CHECK(ids[i] >= 0 && ids[i] < want.padded_vocab,
                  "{}: token {} has id {}, outside the model's vocabulary [0, {})", path, i, ids[i], want.padded_vocab);
  std::memcpy(state, p + body + ids.size() * 4, size_t(floats) * 4);
  tokens = std::move(ids);
  if (n_pending_out) *n_pending_out = n_pending;
  return pos;
}

}  // namespace sambalm
