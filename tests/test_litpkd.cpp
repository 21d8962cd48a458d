// lit_gpt PackedDataset chunk files: files written byte by byte from the header layout read back as
// exactly the tokens written (uint16, int32, signed types, the sep_token tail), selected by file
// prefix as pretrain.py does; `prepare --format litpkd` output checked byte for byte against the
// layout; bad headers are errors naming the file; training runs on such data.
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "io/litpkd.h"
#include "io/shards.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "train/data_loader.h"
#include "train/prepare_data.h"

namespace sambalm {
namespace {

namespace fs = std::filesystem;

// One chunk file as PackedDatasetBuilder writes it: "LITPKDS", u64 version 1, u8 dtype code, u64
// chunk size, then chunk_size little-endian tokens of `width` bytes: `tokens`, then `sep` for the rest.
std::string chunk_bytes(uint8_t code, int width, uint64_t chunk_size, const std::vector<int64_t>& tokens, int64_t sep) {
  std::string b = "LITPKDS";
  for (int i = 0; i < 8; ++i) b.push_back(char(i == 0 ? 1 : 0));
  b.push_back(char(code));
  for (int i = 0; i < 8; ++i) b.push_back(char(uint8_t(chunk_size >> (8 * i))));
  for (uint64_t k = 0; k < chunk_size; ++k) {
    const uint64_t v = uint64_t(k < tokens.size() ? tokens[k] : sep);
    for (int i = 0; i < width; ++i) b.push_back(char(uint8_t(v >> (8 * i))));
  }
  return b;
}

std::string write_file(const std::string& path, const std::string& body) {
  std::ofstream(path, std::ios::binary) << body;
  return path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<int32_t> read_all(const TokenSource& s) {
  std::vector<int32_t> v(size_t(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(LitPkd, ChunksSelectedByPrefixReadBackExactly) {
  struct Case {
    uint8_t code;
    int width;
    int32_t vocab;
  };
  for (Case c : {Case{8, 2, 32000}, Case{4, 4, 70000}}) {
    const std::string dir = test::temp_dir("litpkd_read_" + std::to_string(c.code));
    const uint64_t chunk = 50;
    const int32_t sep = 1;
    std::vector<int64_t> tokens;
    for (int i = 0; i < 130; ++i) tokens.push_back((int64_t(i) * 7919 + 3) % c.vocab);
    // Three chunks: two full, the last holding 30 tokens and 20 sep_token.
    std::vector<int32_t> expected;
    for (int k = 0; k < 3; ++k) {
      std::vector<int64_t> part(tokens.begin() + k * 50, tokens.begin() + std::min<int>(130, (k + 1) * 50));
      write_file(fmt::format("{}/train_slim_0_{:010d}.bin", dir, k), chunk_bytes(c.code, c.width, chunk, part, sep));
      for (uint64_t i = 0; i < chunk; ++i) expected.push_back(int32_t(i < part.size() ? part[i] : sep));
    }
    // Not part of the prefix.
    write_file(dir + "/validation_0_0000000000.bin", chunk_bytes(c.code, c.width, chunk, {5, 6}, sep));
    TokenSource s = TokenSource::prefix(dir + "/train_slim", c.vocab, "--data");
    EXPECT_EQ(s.size(), 150);
    EXPECT_EQ(read_all(s), expected);
    // The real tokens come first, the sep_token fill after them.
    std::vector<int32_t> head(expected.begin(), expected.begin() + 130);
    EXPECT_EQ(std::vector<int64_t>(head.begin(), head.end()), tokens);
    EXPECT_EQ(std::count(expected.begin() + 130, expected.end(), sep), 20);
    // A window across the chunk boundary.
    std::vector<int32_t> w(10);
    s.read(45, 10, w.data());
    EXPECT_EQ(w, std::vector<int32_t>(expected.begin() + 45, expected.begin() + 55));
    Shard one = Shard::open(dir + "/validation_0_0000000000.bin", c.vocab);
    EXPECT_TRUE(one.is_litpkd());
    EXPECT_EQ(one.size(), 50);
    EXPECT_EQ(one.at(0), 5);
    EXPECT_EQ(one.at(49), sep);
  }
}

TEST(LitPkd, SignedAndNarrowTypes) {
  const std::string dir = test::temp_dir("litpkd_types");
  struct Case {
    uint8_t code;
    int width;
  };
  for (Case c : {Case{1, 1}, Case{2, 1}, Case{3, 2}, Case{5, 8}}) {
    auto p = write_file(dir + "/t.bin", chunk_bytes(c.code, c.width, 4, {0, 7, 100, 127}, 0));
    std::vector<int32_t> v(4);
    Shard::open(p, 128).read(0, 4, v.data());
    EXPECT_EQ(v, (std::vector<int32_t>{0, 7, 100, 127})) << int(c.code);
  }
  // A negative id in a signed chunk is named, not wrapped.
  auto neg = write_file(dir + "/neg.bin", chunk_bytes(3, 2, 2, {4, -2}, 0));
  std::vector<int32_t> v(2);
  expect_error([&] { Shard::open(neg, 10).read(0, 2, v.data()); }, {"neg.bin", "token 1"});
}

TEST(LitPkd, BadFilesAreClearErrors) {
  const std::string dir = test::temp_dir("litpkd_bad");
  auto good = chunk_bytes(8, 2, 10, {1, 2, 3}, 0);
  auto p = write_file(dir + "/good.bin", good);
  expect_error([&] { Shard::open(p); }, {"good.bin", "does not record its vocabulary", "--tokenizer"});
  auto trunc = write_file(dir + "/trunc.bin", good.substr(0, good.size() - 2));
  expect_error([&] { Shard::open(trunc, 100); }, {"trunc.bin", "truncated", "10 tokens"});
  std::string f = good;
  f[15] = 6;
  expect_error([&] { Shard::open(write_file(dir + "/float.bin", f), 100); }, {"float.bin", "float"});
  std::string ver = good;
  ver[7] = 2;
  expect_error([&] { Shard::open(write_file(dir + "/ver.bin", ver), 100); }, {"ver.bin", "version 2"});
  expect_error([&] { Shard::open(write_file(dir + "/tiny.bin", "LITPKDS"), 100); }, {"tiny.bin", "header"});
  std::vector<int32_t> v(3);
  expect_error([&] { Shard::open(p, 3).read(0, 3, v.data()); }, {"good.bin", "is 3", "[0, 3)"});
  expect_error([&] { TokenSource::prefix(dir + "/nomatch", 100, "--data"); }, {"--data", "nomatch", "starts with"});
}

// `prepare --format litpkd` through the CLI, compared byte for byte with files built from the layout.
TEST(LitPkd, PrepareWritesTheLayoutByteForByte) {
  const std::string dir = test::temp_dir("litpkd_prepare");
  std::string text;
  for (int i = 0; i < 40; ++i) text += "line " + std::to_string(i) + " of the corpus\n";
  write_file(dir + "/corpus.txt", text);
  std::string out;
  ASSERT_EQ(test::run_cli("prepare -q -t bytes --format litpkd --chunk-size 64 --sep-token 3 --out " + dir + "/out " +
                              dir + "/corpus.txt",
                          &out),
            0)
      << out;
  // Bytes tokenizer: the ids are the bytes, no EOS; train = the first int(0.9 n).
  const size_t n = text.size(), n_train = size_t(0.9 * double(n));
  for (auto [split, begin, end] : {std::tuple<std::string, size_t, size_t>{"train", 0, n_train},
                                   std::tuple<std::string, size_t, size_t>{"val", n_train, n}}) {
    size_t k = 0;
    for (size_t a = begin; a < end; a += 64, ++k) {
      std::vector<int64_t> part;
      for (size_t i = a; i < std::min(end, a + 64); ++i) part.push_back(uint8_t(text[i]));
      const std::string path = fmt::format("{}/out/{}_{:010d}.bin", dir, split, k);
      ASSERT_TRUE(fs::exists(path)) << path;
      EXPECT_EQ(read_bytes(path), chunk_bytes(8, 2, 64, part, 3)) << path;
    }
    EXPECT_FALSE(fs::exists(fmt::format("{}/out/{}_{:010d}.bin", dir, split, k))) << "one chunk too many";
  }
  // Training reads the prepared directory back (vocabulary from meta.json's tokenizer).
  ASSERT_EQ(test::run_cli("train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 "
                          "--local-window 16 --seq-len 16 --batch 2 --eval-batches 1 --steps 1 --data " +
                              dir + "/out --out " + dir + "/r",
                          &out),
            0)
      << out;
  // And by prefix, as pretrain.py's data config names datasets.
  ASSERT_EQ(test::run_cli("train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 "
                          "--local-window 16 --seq-len 16 --batch 2 --eval-batches 1 --steps 1 --tokenizer bytes "
                          "--data " +
                              dir + "/out/train --val-data " + dir + "/out/val --out " + dir + "/r2",
                          &out),
            0)
      << out;
  // The bytes tokenizer has no BOS or EOS: the fill must be given, and must be in the vocabulary.
  EXPECT_EQ(test::run_cli("prepare -q -t bytes --format litpkd --out " + dir + "/o3 " + dir + "/corpus.txt", &out), 1);
  EXPECT_NE(out.find("--sep-token"), std::string::npos) << out;
  EXPECT_EQ(
      test::run_cli("prepare -q -t bytes --format litpkd --sep-token 256 --out " + dir + "/o3 " + dir + "/corpus.txt",
                    &out),
      1);
  EXPECT_NE(out.find("--sep-token 256"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/o3"));
  // A bad --format is refused at parse time, naming the option.
  EXPECT_NE(test::run_cli("prepare -q -t bytes --format npy --out " + dir + "/o2 " + dir + "/corpus.txt", &out), 0);
  EXPECT_NE(out.find("--format"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
