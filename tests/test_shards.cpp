// Token shards and `sambalm prepare`: format round trip, validation errors, prepared shards equal to
// encoding the text directly, determinism, JSON Lines and directories, the CLI.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/shards.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "train/data_loader.h"
#include "train/prepare_data.h"

namespace sambalm {
namespace {

namespace fs = std::filesystem;

std::string write_file(const std::string& path, const std::string& body) {
  std::ofstream(path, std::ios::binary) << body;
  return path;
}

std::vector<int32_t> read_all(const TokenSource& s) {
  std::vector<int32_t> v(size_t(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

std::string expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    return e.what();
  }
  return {};
}

TEST(Shards, WriteReadRoundTrip) {
  std::string dir = test::temp_dir("shards");
  for (int32_t vocab : {300, 65536, 70000}) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 5000; ++i) ids.push_back((i * 7919) % vocab);
    std::string path = dir + "/s.bin";
    {
      ShardWriter w(path, vocab, vocab - 1);
      w.append(ids.data(), 1234);
      w.append(ids.data() + 1234, ids.size() - 1234);
      w.commit();
    }
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    EXPECT_EQ(fs::file_size(path), kShardHeaderBytes + ids.size() * (vocab <= 65536 ? 2 : 4));
    Shard s = Shard::open(path);
    EXPECT_EQ(s.size(), int64_t(ids.size()));
    EXPECT_EQ(s.vocab_size(), vocab);
    EXPECT_EQ(s.eos_id(), vocab - 1);
    std::vector<int32_t> back(ids.size());
    s.read(0, s.size(), back.data());
    EXPECT_EQ(back, ids);
    EXPECT_EQ(s.at(17), ids[17]);
  }
}

TEST(Shards, WriterRejectsOutOfRangeAndCleansUp) {
  std::string dir = test::temp_dir("shards_w");
  {
    ShardWriter w(dir + "/x.bin", 100, std::nullopt);
    std::vector<int32_t> ids = {1, 2, 100};
    expect_error([&] { w.append(ids.data(), ids.size()); }, {"x.bin", "100"});
  }
  EXPECT_FALSE(fs::exists(dir + "/x.bin.tmp"));  // an uncommitted writer leaves nothing
  EXPECT_FALSE(fs::exists(dir + "/x.bin"));
}

TEST(Shards, BadFilesAreClearErrors) {
  std::string dir = test::temp_dir("shards_bad");
  std::vector<int32_t> ids(100, 7);
  std::string good = dir + "/good.bin";
  {
    ShardWriter w(good, 1000, 0);
    w.append(ids.data(), ids.size());
    w.commit();
  }
  std::string bytes = read_text_file(good);
  std::string magic = write_file(dir + "/magic.bin", "XXXXXXXX" + bytes.substr(8));
  expect_error([&] { Shard::open(magic); }, {"magic.bin", "magic"});
  std::string trunc = write_file(dir + "/trunc.bin", bytes.substr(0, bytes.size() - 3));
  expect_error([&] { Shard::open(trunc); }, {"trunc.bin", "truncated", "100 tokens"});
  std::string tiny = write_file(dir + "/tiny.bin", bytes.substr(0, 10));
  expect_error([&] { Shard::open(tiny); }, {"tiny.bin", "header"});
  std::string version = bytes;
  version[8] = 9;
  expect_error([&] { Shard::open(write_file(dir + "/version.bin", version)); }, {"version.bin", "version 9"});
  std::string width = bytes;
  width[12] = 3;
  expect_error([&] { Shard::open(write_file(dir + "/width.bin", width)); }, {"width.bin", "3 bytes"});
  // A token at or above the header's vocabulary size (1000): refused when read, naming the shard.
  std::string high = bytes;
  const uint16_t big = 1000;
  std::memcpy(high.data() + kShardHeaderBytes + 2 * 37, &big, 2);
  Shard h = Shard::open(write_file(dir + "/high.bin", high));
  std::vector<int32_t> out(100);
  EXPECT_NO_THROW(h.read(0, 37, out.data()));
  expect_error([&] { h.read(30, 10, out.data()); }, {"high.bin", "token 37 is 1000", "[0, 1000)"});
  expect_error([&] { Shard::open(dir + "/missing.bin"); }, {"missing.bin"});
  expect_error([&] { list_shards(dir, "train"); }, {dir, "train"});
}

// The default corpus' flavour of text, several documents.
std::string sample_text(int i) {
  std::string s;
  for (int k = 0; k < 30; ++k)
    s += fmt::format(
        "Section {}.{}\n===========\n\nThe :func:`open` call returns a file object; see ``io`` "
        "for details \u2014 caf\u00e9 na\u00efve {}.\n   .. versionadded:: 3.{}\n\n",
        i, k, k * 37, k % 12);
  return s;
}

TEST(Prepare, ShardsEqualDirectEncoding) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("prepare");
  std::string in = dir + "/in";
  fs::create_directories(in + "/sub");
  std::vector<std::string> docs;
  for (int i = 0; i < 3; ++i) docs.push_back(sample_text(i));
  write_file(in + "/a.txt", docs[0]);
  write_file(in + "/sub/b.txt", docs[1]);
  write_file(in + "/c.jsonl", nlohmann::json({{"text", docs[2]}}).dump() + "\n\n" +
                                  nlohmann::json({{"text", "short \u65e5\u672c"}, {"id", 3}}).dump() + "\n");
  write_file(in + "/ignored.bin", "\xff\xfe binary");
  docs.push_back("short \u65e5\u672c");
  // Read order: byte-wise sorted paths: a.txt, c.jsonl (2 documents), sub/b.txt.
  std::vector<std::string> order = {docs[0], docs[2], docs[3], docs[1]};
  for (std::string tpath :
       {test::fixtures_dir() + "/bpe_tiny/tokenizer.json", test::fixtures_dir() + "/sp_tiny", std::string("bytes")}) {
    auto tok = load_tokenizer(tpath);
    std::vector<int32_t> expected;
    for (const auto& d : order) {
      tok->encode(d, expected);
      if (tok->eos_id()) expected.push_back(*tok->eos_id());
    }
    PrepareOptions o;
    o.inputs = {in};
    o.output_dir = dir + "/out";
    o.overwrite = true;
    o.shard_tokens = 1000;  // several shards per split
    PrepareResult r = prepare_shards(*tok, o);
    EXPECT_EQ(r.documents, 4u);
    EXPECT_EQ(r.train_tokens + r.val_tokens, expected.size());
    EXPECT_EQ(r.train_tokens, uint64_t(0.9 * double(expected.size())));
    EXPECT_GT(r.train_shards.size(), 1u);
    auto train = read_all(TokenSource::shards(o.output_dir, "train"));
    auto val = read_all(TokenSource::shards(o.output_dir, "val"));
    train.insert(train.end(), val.begin(), val.end());
    EXPECT_EQ(train, expected) << tpath;
    auto meta = nlohmann::json::parse(read_text_file(o.output_dir + "/meta.json"));
    EXPECT_EQ(meta["train_tokens"].get<uint64_t>(), r.train_tokens);
    EXPECT_EQ(meta["vocab_size"].get<int32_t>(), tok->vocab_size());
  }
}

TEST(Prepare, LargeDocumentIsDeterministicAcrossThreads) {
  REQUIRE_FIXTURES();
  // One document larger than the piece size, so it is encoded in parallel pieces.
  std::string dir = test::temp_dir("prepare_big");
  std::string doc;
  for (int i = 0; doc.size() < (5u << 20) / (std::getenv("SAMBALM_TEST_SCALE") ? 2 : 1); ++i) doc += sample_text(i);
  write_file(dir + "/big.txt", doc);
  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json");
  std::vector<int32_t> expected = tok->encode(doc);
  expected.push_back(*tok->eos_id());
  std::string first;
  for (int threads : {1, 2}) {
    PrepareOptions o;
    o.inputs = {dir + "/big.txt"};
    o.output_dir = dir + "/out" + std::to_string(threads);
    o.threads = threads;
    prepare_shards(*tok, o);
    auto all = read_all(TokenSource::shards(o.output_dir, "train"));
    auto val = read_all(TokenSource::shards(o.output_dir, "val"));
    all.insert(all.end(), val.begin(), val.end());
    EXPECT_EQ(all, expected);
    std::string bytes =
        read_text_file(o.output_dir + "/train_000000.bin") + read_text_file(o.output_dir + "/val_000000.bin");
    if (first.empty())
      first = bytes;
    else
      EXPECT_TRUE(bytes == first) << "output differs between thread counts";
  }
}

TEST(Prepare, BadInputsAreClearErrors) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("prepare_bad");
  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_tiny/tokenizer.json");
  PrepareOptions o;
  o.output_dir = dir + "/out";
  o.inputs = {write_file(dir + "/bad.txt", "fine text\nthen \xC3\x28 bad")};
  expect_error([&] { prepare_shards(*tok, o); }, {"bad.txt", "not valid UTF-8", "offset 15"});
  o.inputs = {write_file(dir + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n")};
  expect_error([&] { prepare_shards(*tok, o); }, {"bad.jsonl:2", "text"});
  o.inputs = {write_file(dir + "/bad2.jsonl", "{\"text\": \"ok\"}\nnot json\n")};
  expect_error([&] { prepare_shards(*tok, o); }, {"bad2.jsonl:2", "JSON"});
  o.inputs = {dir + "/nothing.txt"};
  expect_error([&] { prepare_shards(*tok, o); }, {"nothing.txt", "no such"});
  // Existing shards are not silently mixed with new ones.
  o.inputs = {write_file(dir + "/ok.txt", "hello world")};
  prepare_shards(*tok, o);
  expect_error([&] { prepare_shards(*tok, o); }, {"--overwrite"});
  o.overwrite = true;
  EXPECT_NO_THROW(prepare_shards(*tok, o));
  EXPECT_FALSE(fs::exists(o.output_dir + "/tokens.stream.tmp"));
}

TEST(Prepare, Cli) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("prepare_cli");
  std::string in = write_file(dir + "/in.txt", sample_text(1));
  std::string out;
  int rc = test::run_cli(
      fmt::format("prepare -t {}/bpe_tiny/tokenizer.json --out {}/s {}", test::fixtures_dir(), dir, in), &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("tokens/s"), std::string::npos) << out;  // progress line (stderr is not a TTY here)
  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_tiny");
  auto train = read_all(TokenSource::shards(dir + "/s", "train"));
  auto expected = tok->encode(sample_text(1));
  ASSERT_LE(train.size(), expected.size());
  EXPECT_TRUE(std::equal(train.begin(), train.end(), expected.begin()));
  rc = test::run_cli(fmt::format("prepare -t {}/nope.json --out {}/s2 {}", dir, dir, in), &out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("nope.json"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
