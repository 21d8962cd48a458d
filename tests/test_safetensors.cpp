// safetensors reader/writer: round trip, fixture read, and every malformed-header error path.
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "testing.h"

using namespace sambalm;

namespace {
std::string make_file(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = char(n >> (8 * i));
  return s + header + std::string(data_bytes, '\x01');
}
void expect_error(const std::string& bytes, const std::string& needle) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.safetensors", nullptr);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}
}  // namespace

TEST(Safetensors, RoundTrip) {
  auto dir = test::temp_dir("st");
  Tensor a = Tensor::from_f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = a.to_dtype(DType::BF16);
  write_safetensors(dir + "/x.safetensors", {{"a", a}, {"b", b}}, {{"format", "pt"}});
  auto f = read_safetensors(dir + "/x.safetensors");
  ASSERT_TRUE(f.has("a"));
  EXPECT_EQ(f.get("a").shape(), (Shape{2, 3}));
  EXPECT_EQ(f.get("b").dtype(), DType::BF16);
  EXPECT_EQ(test::rel_error(f.get("a"), a), 0.0);
  EXPECT_EQ(test::rel_error(f.get("b"), a), 0.0);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_THROW(f.get("missing"), Error);
}

TEST(Safetensors, ReadsFixture) {
  REQUIRE_FIXTURES();
  auto f = read_safetensors(test::fixtures_dir() + "/samba_tiny/expected.safetensors");
  EXPECT_EQ(f.get("input_ids").dtype(), DType::I64);
  EXPECT_EQ(f.get("logits").ndim(), 3);
}

TEST(Safetensors, MalformedInputs) {
  expect_error("abc", "shorter than the 8-byte");
  expect_error(make_file("{}", 0).substr(0, 9), "exceeds the file size");
  expect_error(make_file("{not json", 0), "not a valid JSON");
  expect_error(make_file(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), "needs 8 bytes");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", 4), "out of range");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "out of range");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
               "overlap");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "shape entry");
  expect_error(make_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "no shape");
  expect_error(make_file(R"([1,2])", 0), "not a valid JSON object");
}

TEST(Safetensors, MissingFile) { EXPECT_THROW(read_safetensors("/nonexistent/x.safetensors"), Error); }
