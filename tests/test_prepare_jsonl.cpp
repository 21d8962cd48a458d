// `sambalm prepare` on SlimPajama-style data: compressed JSON Lines (.jsonl.zst, .jsonl.gz) read line
// by line, --split / --percentage / --group-by on a synthetic train/chunkN, validation/chunkN tree,
// and bad input (truncated .zst, a line that is not JSON, a missing field, non-UTF-8 text, an empty
// directory), stopping with FILE:LINE or, with --skip-bad-lines, counted.
#include <zlib.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/line_reader.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "train/data_loader.h"
#include "train/prepare_data.h"

namespace sambalm {
namespace {

namespace fs = std::filesystem;

std::string write_file(const std::string& path, const std::string& body) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << body;
  return path;
}

// Zstandard frames, one per part (several parts: a multi-frame file, as `cat a.zst b.zst` makes).
std::string zstd_frames(const std::vector<std::string>& parts) {
  std::string all;
  for (const auto& p : parts) {
    std::string out(ZSTD_compressBound(p.size()), '\0');
    size_t n = ZSTD_compress(out.data(), out.size(), p.data(), p.size(), 3);
    EXPECT_FALSE(ZSTD_isError(n));
    all += out.substr(0, n);
  }
  return all;
}

void write_gzip(const std::string& path, const std::string& body) {
  fs::create_directories(fs::path(path).parent_path());
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, body.data(), unsigned(body.size())), int(body.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
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

std::vector<int32_t> read_all(const TokenSource& s) {
  std::vector<int32_t> v(size_t(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

std::string doc_line(const std::string& text, const std::string& set) {
  return nlohmann::json({{"text", text}, {"meta", {{"redpajama_set_name", set}}}}).dump() + "\n";
}

TEST(LineReader, CompressedAndPlainGiveTheSameLines) {
  std::string dir = test::temp_dir("line_reader");
  // Over 3 MiB with lines of varied length, so lines cross the 1 MiB buffers; CRLF and no final newline.
  std::vector<std::string> lines;
  std::string body;
  for (int i = 0; body.size() < (3u << 20); ++i) {
    lines.push_back(fmt::format("line {} {}", i, std::string(size_t(i * 7919 % 3000), 'a' + i % 26)));
    body += lines.back() + (i % 5 == 0 ? "\r\n" : "\n");
  }
  lines.push_back("last, no newline");
  body += lines.back();
  const size_t half = body.size() / 2;
  write_file(dir + "/a.jsonl", body);
  write_file(dir + "/a.jsonl.zst", zstd_frames({body.substr(0, half), body.substr(half)}));
  write_gzip(dir + "/a.jsonl.gz", body.substr(0, half));
  {  // a second gzip member, as `cat a.gz b.gz` makes
    write_gzip(dir + "/b.gz", body.substr(half));
    std::ofstream(dir + "/a.jsonl.gz", std::ios::binary | std::ios::app) << read_text_file(dir + "/b.gz");
  }
  for (const char* name : {"a.jsonl", "a.jsonl.zst", "a.jsonl.gz"}) {
    LineReader r(dir + "/" + name);
    std::string line;
    size_t n = 0;
    while (r.next(line)) {
      ASSERT_LT(n, lines.size()) << name;
      ASSERT_EQ(line, lines[n]) << name << " line " << n + 1;
      ++n;
      EXPECT_EQ(r.line_number(), n);
    }
    EXPECT_EQ(n, lines.size()) << name;
    EXPECT_EQ(r.file_bytes_read(), fs::file_size(dir + "/" + name)) << name;
  }
}

// The tree: train/chunk1 (3 files: .zst, .gz, multi-frame .zst), train/chunk2 (3 .zst files),
// validation/chunk1. --split train --percentage 0.5 reads int(6 * 0.5) = 3 files: chunk1's.
TEST(PrepareJsonl, SlimPajamaTreeSplitPercentageGroupBy) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("prepare_slim");
  const std::string root = dir + "/SlimPajama";
  const std::vector<std::string> sets = {"RedPajamaC4", "RedPajamaWikipedia", "RedPajama Stack/Exchange"};
  std::map<std::string, std::vector<std::string>> expected_docs;  // by sanitised group, in read order
  int counter = 0;
  auto make_docs = [&](int n, bool selected) {
    std::vector<std::string> lines;
    for (int i = 0; i < n; ++i, ++counter) {
      const std::string& set = sets[size_t(counter * 7 % 3)];
      std::string text = fmt::format("Document {} of {}: caf\u00e9 \u65e5\u672c {}\n\n  indented", counter, set,
                                     std::string(size_t(counter % 4), '!'));
      lines.push_back(doc_line(text, set));
      if (selected) expected_docs[sanitize_group_name(set)].push_back(text);
    }
    return lines;
  };
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += x;
    return s;
  };
  write_file(root + "/train/chunk1/example_train_0.jsonl.zst", zstd_frames({join(make_docs(5, true))}));
  write_gzip(root + "/train/chunk1/example_train_1.jsonl.gz", join(make_docs(4, true)) + "\n");  // + blank line
  write_file(root + "/train/chunk1/example_train_2.jsonl.zst",
             zstd_frames({join(make_docs(3, true)), join(make_docs(3, true))}));
  for (int f = 0; f < 3; ++f)
    write_file(root + fmt::format("/train/chunk2/example_train_{}.jsonl.zst", f),
               zstd_frames({join(make_docs(4, false))}));
  write_file(root + "/validation/chunk1/example_holdout_0.jsonl.zst", zstd_frames({join(make_docs(4, false))}));

  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_tiny/tokenizer.json");
  ASSERT_TRUE(tok->eos_id());
  const std::string out = dir + "/out";
  std::string log;
  ASSERT_EQ(test::run_cli(fmt::format("prepare -q -t {}/bpe_tiny/tokenizer.json --out {} --split train --percentage "
                                      "0.5 --group-by meta.redpajama_set_name --train-fraction 1 --shard-tokens 100 {}",
                                      test::fixtures_dir(), out, root),
                          &log),
            0)
      << log;
  EXPECT_NE(log.find("groups (3"), std::string::npos) << log;
  ASSERT_EQ(expected_docs.size(), 3u);
  EXPECT_TRUE(expected_docs.count("RedPajama_Stack_Exchange"));
  size_t total_docs = 0;
  for (const auto& [group, docs] : expected_docs) {
    ASSERT_TRUE(fs::is_directory(out + "/" + group)) << group;
    std::vector<int32_t> expected;
    for (const auto& d : docs) {
      tok->encode(d, expected);
      expected.push_back(*tok->eos_id());
    }
    auto got = read_all(TokenSource::shards(out + "/" + group, "train"));
    EXPECT_EQ(got, expected) << group;
    auto meta = nlohmann::json::parse(read_text_file(out + "/" + group + "/meta.json"));
    EXPECT_EQ(meta["documents"].get<size_t>(), docs.size()) << group;
    EXPECT_EQ(meta["inputs"].size(), 3u);
    EXPECT_EQ(meta["group"], group);
    EXPECT_GT(meta["train_shards"].size(), 1u);  // --shard-tokens 100: several shards
    total_docs += docs.size();
  }
  EXPECT_EQ(total_docs, 15u);  // chunk1: 5 + 4 + 3 + 3
  auto top = nlohmann::json::parse(read_text_file(out + "/meta.json"));
  EXPECT_EQ(top["groups"].size(), 3u);
  EXPECT_EQ(top["documents"].get<size_t>(), total_docs);
  for (const auto& e : fs::recursive_directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();

  // --split validation reads only validation/; with no --group-by, one shard set.
  PrepareOptions o;
  o.inputs = {root};
  o.output_dir = dir + "/val";
  o.split = "validation";
  o.train_fraction = 0;
  PrepareResult r = prepare_shards(*tok, o);
  EXPECT_EQ(r.documents, 4u);
  EXPECT_EQ(r.train_tokens, 0u);
  EXPECT_TRUE(r.groups.empty());
  // The file list: percentage is int(n * p) of the sorted list, as prepare_slimpajama.py.
  auto files = expand_inputs({root}, "train", 0.5);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_NE(files[1].find("train/chunk1/example_train_1.jsonl.gz"), std::string::npos);
  expect_error([&] { expand_inputs({root}, "train", 0.1); }, {"--percentage", "6 input files", "none"});
  expect_error([&] { expand_inputs({root}, "test", 1); }, {root, "no 'test'"});
}

TEST(PrepareJsonl, BadInputIsAClearError) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("prepare_jsonl_bad");
  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_tiny/tokenizer.json");
  PrepareOptions o;
  o.output_dir = dir + "/out";
  o.overwrite = true;
  std::string good = doc_line("fine", "A") + doc_line("also fine", "B");

  // A truncated .zst (a download cut short): the error names the file.
  std::string z = zstd_frames({good + good + good});
  o.inputs = {write_file(dir + "/cut.jsonl.zst", z.substr(0, z.size() - 5))};
  expect_error([&] { prepare_shards(*tok, o); }, {"cut.jsonl.zst", "truncated"});
  o.inputs = {write_file(dir + "/junk.jsonl.zst", "this is not zstd data at all")};
  expect_error([&] { prepare_shards(*tok, o); }, {"junk.jsonl.zst", "zstd"});
  std::string gz = dir + "/cut.jsonl.gz";
  write_gzip(gz, good + good);
  write_file(gz, read_text_file(gz).substr(0, fs::file_size(gz) - 12));
  o.inputs = {gz};
  expect_error([&] { prepare_shards(*tok, o); }, {"cut.jsonl.gz", "truncated"});

  // Bad lines: file and line number.
  o.inputs = {write_file(dir + "/a.jsonl.zst", zstd_frames({good + "{\"text\": \"x\"\n" + good}))};
  expect_error([&] { prepare_shards(*tok, o); }, {"a.jsonl.zst:3", "not a JSON object"});
  o.inputs = {write_file(dir + "/b.jsonl.zst", zstd_frames({good + good + "{\"meta\": {}}\n"}))};
  expect_error([&] { prepare_shards(*tok, o); }, {"b.jsonl.zst:5", "no string field 'text'"});
  o.inputs = {write_file(dir + "/c.jsonl", "{\"text\": \"caf\xe9 latin-1\"}\n")};
  expect_error([&] { prepare_shards(*tok, o); }, {"c.jsonl:1", "not valid UTF-8", "0xe9"});
  o.inputs = {dir + "/c.jsonl"};
  o.text_field = "meta.body";
  expect_error([&] { prepare_shards(*tok, o); }, {"c.jsonl:1"});
  o.text_field = "text";
  o.group_by = "meta.redpajama_set_name";
  o.inputs = {write_file(dir + "/d.jsonl", good + "{\"text\": \"no meta\"}\n")};
  expect_error([&] { prepare_shards(*tok, o); }, {"d.jsonl:3", "meta.redpajama_set_name"});
  o.group_by.clear();

  // An empty directory, and one with only unrelated files.
  fs::create_directories(dir + "/empty");
  o.inputs = {dir + "/empty"};
  expect_error([&] { prepare_shards(*tok, o); }, {"empty", "no .jsonl"});
  write_file(dir + "/other/readme.pdf", "x");
  o.inputs = {dir + "/other"};
  expect_error([&] { prepare_shards(*tok, o); }, {"other", "no .jsonl"});

  // --skip-bad-lines: the good lines are kept, the bad ones counted, through the CLI.
  std::string mixed = write_file(
      dir + "/mixed/m.jsonl", good + "not json\n" + "{\"txt\": 1}\n" + "{\"text\": \"\xff\"}\n" + doc_line("end", "C"));
  std::string log;
  int rc = test::run_cli(
      fmt::format("prepare -q -t {}/bpe_tiny/tokenizer.json --out {}/skip {}", test::fixtures_dir(), dir, mixed), &log);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(log.find("m.jsonl:3"), std::string::npos) << log;
  rc = test::run_cli(fmt::format("prepare -q -t {}/bpe_tiny/tokenizer.json --train-fraction 1 --skip-bad-lines "
                                 "--out {}/skip {}",
                                 test::fixtures_dir(), dir, mixed),
                     &log);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("skipped 3 bad lines"), std::string::npos) << log;
  EXPECT_NE(log.find("m.jsonl:3"), std::string::npos) << log;
  std::vector<int32_t> expected;
  for (const char* t : {"fine", "also fine", "end"}) {
    tok->encode(t, expected);
    expected.push_back(*tok->eos_id());
  }
  EXPECT_EQ(read_all(TokenSource::shards(dir + "/skip", "train")), expected);
  auto meta = nlohmann::json::parse(read_text_file(dir + "/skip/meta.json"));
  EXPECT_EQ(meta["bad_lines_skipped"].get<int>(), 3);
  EXPECT_EQ(meta["documents"].get<int>(), 3);
}

}  // namespace
}  // namespace sambalm
