// Data loader: token sources (shards spanning files, raw bytes with the 90/10 split), random
// windows (range, uniformity, reproducibility, resume, ranks), sequential windows.
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "io/shards.h"
#include "testing.h"
#include "train/data_loader.h"

namespace sambalm {
namespace {

std::vector<int32_t> make_ids(size_t n, int32_t vocab) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((i * 2654435761u) % uint32_t(vocab));
  return v;
}

// Writes ids as shards of `per_shard` tokens into dir (split "train").
void write_shards(const std::string& dir, const std::vector<int32_t>& ids, size_t per_shard, int32_t vocab) {
  int k = 0;
  for (size_t a = 0; a < ids.size(); a += per_shard) {
    ShardWriter w(shard_path(dir, "train", k++), vocab, std::nullopt);
    w.append(ids.data() + a, std::min(per_shard, ids.size() - a));
    w.commit();
  }
}

TEST(TokenSource, ShardsReadAcrossFileBoundaries) {
  std::string dir = test::temp_dir("dl_shards");
  auto ids = make_ids(1000, 50000);
  write_shards(dir, ids, 137, 50000);
  TokenSource s = TokenSource::shards(dir, "train");
  EXPECT_EQ(s.size(), 1000);
  EXPECT_EQ(s.vocab_size(), 50000);
  for (int64_t off : {0, 100, 130, 136, 137, 500, 900}) {
    std::vector<int32_t> got(100);
    s.read(off, 100, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), ids.begin() + off)) << off;
  }
  std::vector<int32_t> buf(10);
  EXPECT_THROW(s.read(995, 10, buf.data()), Error);
  EXPECT_THROW(TokenSource::shards(dir, "val"), Error);
}

TEST(TokenSource, BytesSplitLikeTheReference) {
  std::string dir = test::temp_dir("dl_bytes");
  std::string path = dir + "/corpus.bin";
  std::string body;
  for (int i = 0; i < 12345; ++i) body.push_back(char(i * 31 + 7));
  std::ofstream(path, std::ios::binary) << body;
  auto train = TokenSource::bytes(path, TokenSource::Split::kTrain);
  auto val = TokenSource::bytes(path, TokenSource::Split::kVal);
  const int64_t n_train = int64_t(0.9 * 12345);  // Python's int(0.9 * n)
  EXPECT_EQ(train.size(), n_train);
  EXPECT_EQ(val.size(), 12345 - n_train);
  EXPECT_EQ(train.vocab_size(), 256);
  int32_t first;
  val.read(0, 1, &first);
  EXPECT_EQ(first, int32_t(uint8_t(body[size_t(n_train)])));
  EXPECT_THROW(TokenSource::bytes(dir + "/missing"), Error);
}

TEST(BatchSampler, WindowsAreInRangeUniformAndReproducible) {
  const int64_t n = 300, T = 9;
  auto ids = std::vector<int32_t>(n);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(i);  // id = position: windows reveal offsets
  TokenSource src = TokenSource::memory(ids, 1000, "positions");
  BatchSampler a(src, 1234), b(src, 1234), c(src, 99);
  const int64_t B = 4, draws = 20000;
  std::vector<int32_t> x(B * T), y(B * T), x2(B * T), y2(B * T), x3(B * T), y3(B * T);
  std::vector<int64_t> hist(size_t(n - T), 0);
  bool differs = false;
  for (int64_t k = 0; k < draws / B; ++k) {
    a.next_batch(x.data(), y.data(), B, T);
    b.next_batch(x2.data(), y2.data(), B, T);
    c.next_batch(x3.data(), y3.data(), B, T);
    ASSERT_EQ(x, x2);
    differs |= x != x3;
    for (int64_t r = 0; r < B; ++r) {
      int64_t off = x[size_t(r * T)];
      ASSERT_GE(off, 0);
      ASSERT_LE(off, n - (T + 1));
      for (int64_t t = 0; t < T; ++t) {
        ASSERT_EQ(x[size_t(r * T + t)], off + t);
        ASSERT_EQ(y[size_t(r * T + t)], off + t + 1);  // targets: the next tokens
      }
      ++hist[size_t(off)];
    }
  }
  EXPECT_TRUE(differs);
  // Every start in [0, n - (T + 1)] occurs, none far from draws / 291 (~68.7; 5 sigma ~ 41).
  for (int64_t h : hist) {
    EXPECT_GT(h, 25);
    EXPECT_LT(h, 115);
  }
}

TEST(BatchSampler, ResumesFromSavedState) {
  TokenSource src = TokenSource::memory(make_ids(5000, 300), 300, "m");
  BatchSampler a(src, 7);
  std::vector<int32_t> x(3 * 16), y(3 * 16);
  for (int i = 0; i < 5; ++i) a.next_batch(x.data(), y.data(), 3, 16);
  nlohmann::json saved = to_json(a.state());
  std::vector<int64_t> next;
  for (int i = 0; i < 10; ++i) next.push_back(a.next_offset(16));
  BatchSampler b(src, 0);
  b.restore(sampler_state_from_json(saved));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(b.next_offset(16), next[size_t(i)]);
  EXPECT_THROW(sampler_state_from_json(nlohmann::json{{"seed", "x"}}), Error);
}

TEST(BatchSampler, RanksShareOneStream) {
  TokenSource src = TokenSource::memory(make_ids(5000, 300), 300, "m");
  BatchSampler one(src, 42), r0(src, 42, 0, 2), r1(src, 42, 1, 2);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(one.next_offset(8), r0.next_offset(8));
    EXPECT_EQ(one.next_offset(8), r1.next_offset(8));
  }
}

// The saved state counts the windows of every rank: a checkpoint of 2 processes resumes on 1 or 3
// and the stream goes on as one process's.
TEST(BatchSampler, StateIsTheWorldsAndResumesOnAnyWorld) {
  TokenSource src = TokenSource::memory(make_ids(5000, 300), 300, "m");
  BatchSampler one(src, 42), r0(src, 42, 0, 2), r1(src, 42, 1, 2);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(r0.next_offset(8), one.next_offset(8));
    EXPECT_EQ(r1.next_offset(8), one.next_offset(8));
  }
  EXPECT_EQ(r0.state().windows_drawn, 12u);
  EXPECT_EQ(r1.state().windows_drawn, one.state().windows_drawn);
  BatchSampler a(src, 42, 0, 3), b(src, 42, 1, 3), c(src, 42, 2, 3), solo(src, 42);
  for (BatchSampler* s : {&a, &b, &c, &solo}) s->restore(r0.state());
  for (int i = 0; i < 20; ++i) {
    const int64_t x = one.next_offset(8), y = one.next_offset(8), z = one.next_offset(8);
    EXPECT_EQ(a.next_offset(8), x);
    EXPECT_EQ(b.next_offset(8), y);
    EXPECT_EQ(c.next_offset(8), z);
    EXPECT_EQ(solo.next_offset(8), x);
    EXPECT_EQ(solo.next_offset(8), y);
    EXPECT_EQ(solo.next_offset(8), z);
  }
}

TEST(BatchSampler, TooFewTokensIsAnError) {
  TokenSource src = TokenSource::memory(make_ids(10, 300), 300, "tiny-set");
  BatchSampler s(src, 1);
  std::vector<int32_t> x(10), y(10);
  try {
    s.next_batch(x.data(), y.data(), 1, 10);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny-set"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TokenSource::memory({1, 300}, 300, "m"), Error);
}

TEST(SequentialWindows, NonOverlappingFromZeroTailLeftOut) {
  const int64_t n = 1000, T = 31;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(i);
  SequentialWindows w(TokenSource::memory(ids, 1000, "p"), T);
  EXPECT_EQ(w.num_windows(), n / (T + 1));  // 31 windows; 8 tail tokens left out
  std::vector<int32_t> x(5 * T), y(5 * T);
  int64_t seen = 0, got;
  while ((got = w.next_batch(x.data(), y.data(), 5)) > 0) {
    for (int64_t r = 0; r < got; ++r, ++seen) {
      EXPECT_EQ(x[size_t(r * T)], seen * (T + 1));
      EXPECT_EQ(y[size_t(r * T + T - 1)], seen * (T + 1) + T);
    }
  }
  EXPECT_EQ(seen, w.num_windows());
  w.seek(3);
  EXPECT_EQ(w.next_batch(x.data(), y.data(), 1), 1);
  EXPECT_EQ(x[0], 3 * (T + 1));
  EXPECT_THROW(w.seek(100), Error);
}

TEST(SequentialWindows, ReferenceValidationCount) {
  // The reference recipe: 11,048,275 bytes, validation = the last 10%, 257-byte windows -> 4,298.
  std::string path = test::temp_dir("dl_ref") + "/corpus.txt";
  std::filesystem::resize_file((std::ofstream(path), path), 11048275);  // sparse: only the size matters
  SequentialWindows w(TokenSource::bytes(path, TokenSource::Split::kVal), 256);
  EXPECT_EQ(w.num_windows(), 4298);
}

}  // namespace
}  // namespace sambalm
