// Bad requests to `sambalm serve`: each gets a 4xx with an OpenAI-style error object naming the
// problem, and the server answers the next request as before. A streaming client that disconnects
// gives its decode slot back at once.
#include <atomic>
#include <chrono>
#include <thread>

#include "serve_testing.h"

using namespace sambalm;
using nlohmann::json;

namespace {

// One server for the whole file: every test also checks that it still serves after the bad request.
// Limits: prompts of 32 tokens, bodies of 4096 bytes, max_tokens 100000, one slot and no queue.
test::ServeProcess& server() {
  static const std::string model = test::serve_model_dir("serve_errors");
  static test::ServeProcess s(model, {"--max-prompt-tokens", "32", "--max-body-bytes", "4096", "--max-tokens", "100000",
                                      "--max-batch", "1", "--max-queue", "0"});
  return s;
}

json good() { return json{{"prompt", "abc"}, {"max_tokens", 3}, {"temperature", 0}}; }

// The error object of a bad request, after checking its status and form; then a good request works.
void expect_error(int status, const json& r, int want_status, const std::string& fragment,
                  const std::string& param = {}) {
  EXPECT_EQ(status, want_status) << r.dump();
  ASSERT_TRUE(r.is_object() && r.contains("error")) << r.dump();
  const json& e = r["error"];
  ASSERT_TRUE(e["message"].is_string());
  EXPECT_NE(e["message"].get<std::string>().find(fragment), std::string::npos) << e.dump();
  EXPECT_TRUE(e["type"].is_string());
  EXPECT_TRUE(e.contains("code"));
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << e.dump();
  }
  auto [ok, r2] = server().post("/v1/completions", good());
  EXPECT_EQ(ok, 200) << "the server stopped serving: " << r2.dump() << "\n" << server().log();
}

void expect_bad(const json& body, int want_status, const std::string& fragment, const std::string& param = {}) {
  auto [status, r] = server().post("/v1/completions", body);
  expect_error(status, r, want_status, fragment, param);
}

TEST(ServeErrors, MalformedJson) {
  ASSERT_GT(server().port, 0) << server().log();
  auto [status, r] = server().post("/v1/completions", std::string("{\"prompt\": \"abc\", "));
  expect_error(status, r, 400, "not valid JSON");
  auto [s2, r2] = server().post("/v1/chat/completions", std::string("[1, 2"));
  expect_error(s2, r2, 400, "not valid JSON");
  auto [s3, r3] = server().post("/v1/completions", std::string("[1, 2]"));
  expect_error(s3, r3, 400, "must be a JSON object");
}

TEST(ServeErrors, WrongTypes) {
  ASSERT_GT(server().port, 0) << server().log();
  expect_bad({{"prompt", 5}}, 400, "'prompt' must be", "prompt");
  expect_bad({{"prompt", json::array({"a", 3})}}, 400, "found an integer", "prompt");
  expect_bad({{"prompt", "abc"}, {"max_tokens", "10"}}, 400, "'max_tokens' must be an integer, got a string",
             "max_tokens");
  expect_bad({{"prompt", "abc"}, {"temperature", "hot"}}, 400, "'temperature' must be a number", "temperature");
  expect_bad({{"prompt", "abc"}, {"stream", "yes"}}, 400, "'stream' must be a boolean", "stream");
  expect_bad({{"prompt", "abc"}, {"logprobs", 3.5}}, 400, "'logprobs' must be an integer", "logprobs");
  expect_bad({{"prompt", "abc"}, {"top_p", 1.5}}, 400, "'top_p' must be in [0, 1]", "top_p");
  expect_bad({{"prompt", json::array({1, 99999})}}, 400, "outside the vocabulary", "prompt");
  auto [s, r] = server().post("/v1/chat/completions", json{{"messages", "hi"}});
  expect_error(s, r, 400, "'messages' must be a non-empty list", "messages");
  auto [s2, r2] = server().post("/v1/chat/completions", json{{"messages", {{{"role", "robot"}, {"content", "x"}}}}});
  expect_error(s2, r2, 400, "is not one of system, user, assistant", "messages[0].role");
}

TEST(ServeErrors, NegativeOrHugeMaxTokens) {
  ASSERT_GT(server().port, 0) << server().log();
  expect_bad({{"prompt", "abc"}, {"max_tokens", -1}}, 400, "'max_tokens' must be in [0, 100000]", "max_tokens");
  expect_bad({{"prompt", "abc"}, {"max_tokens", 1000000000000LL}}, 400, "must be in [0, 100000]", "max_tokens");
  expect_bad({{"prompt", "abc"}, {"max_tokens", 18446744073709551615ULL}}, 400, "must be in [0, 100000]", "max_tokens");
}

TEST(ServeErrors, PromptOverTheLimit) {
  ASSERT_GT(server().port, 0) << server().log();
  auto [status, r] = server().post("/v1/completions", json{{"prompt", std::string(33, 'x')}, {"max_tokens", 1}});
  expect_error(status, r, 400, "33 tokens, more than the server's limit of 32", "prompt");
  EXPECT_EQ(r["error"]["code"], "context_length_exceeded");
  expect_bad({{"prompt", ""}}, 400, "is empty", "prompt");
}

TEST(ServeErrors, UnknownModelName) {
  ASSERT_GT(server().port, 0) << server().log();
  expect_bad({{"model", "gpt-17"}, {"prompt", "abc"}}, 404, "the model 'gpt-17' does not exist", "model");
}

TEST(ServeErrors, TooManyStopStrings) {
  ASSERT_GT(server().port, 0) << server().log();
  json stops = json::array();
  for (int i = 0; i < 17; ++i) stops.push_back("s" + std::to_string(i));
  expect_bad({{"prompt", "abc"}, {"stop", stops}}, 400, "17 stop strings, more than the limit of 16", "stop");
  expect_bad({{"prompt", "abc"}, {"stop", json::array({"a", ""})}}, 400, "empty string", "stop");
}

TEST(ServeErrors, BodyOverTheSizeLimit) {
  ASSERT_GT(server().port, 0) << server().log();
  auto [status, r] = server().post("/v1/completions", json{{"prompt", std::string(5000, 'a')}});
  expect_error(status, r, 413, "larger than the server's limit of 4096 bytes");
}

TEST(ServeErrors, UnknownRoute) {
  ASSERT_GT(server().port, 0) << server().log();
  auto [status, r] = server().post("/v1/embeddings", good());
  expect_error(status, r, 404, "no route POST /v1/embeddings");
}

int64_t metric(const std::string& name) {
  auto res = server().client().Get("/metrics");
  if (!res) return -1;
  const size_t at = res->body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::atoll(res->body.c_str() + at + name.size() + 2);
}

TEST(ServeErrors, ClientDisconnectingMidStreamFreesItsSlot) {
  ASSERT_GT(server().port, 0) << server().log();
  const int64_t before = metric("sambalm_generated_tokens_total");
  // A stream that would run for 100000 tokens; the client reads a few events and hangs up.
  json body = {{"prompt", "abc"}, {"max_tokens", 100000}, {"ignore_eos", true}, {"stream", true}};
  size_t received = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t n, uint64_t, uint64_t) {
    received += n;
    return received < 600;  // false: the client closes the connection
  };
  auto res = server().client().send(req);
  EXPECT_FALSE(res);  // cancelled by the receiver
  EXPECT_GE(received, 600u);
  // The only slot comes back (the server has no queue: a held slot would answer 429).
  int64_t live = -1;
  for (int i = 0; i < 200 && live != 0; ++i) {
    live = metric("sambalm_live_sequences");
    if (live != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(live, 0) << server().log();
  auto [status, r] = server().post("/v1/completions", good());
  EXPECT_EQ(status, 200) << r.dump();
  EXPECT_LT(metric("sambalm_generated_tokens_total") - before, 100000) << "the stream ran to its end";
}

TEST(ServeErrors, FullServerAnswers429) {
  ASSERT_GT(server().port, 0) << server().log();
  // More prompts than slots + queue can ever hold: refused outright.
  expect_bad({{"prompt", json::array({"abc", "def"})}, {"max_tokens", 2}}, 400, "more than the server can hold",
             "prompt");
  // A stream holds the only slot; with no queue, the next request is turned away until it ends.
  std::atomic<bool> hang_up{false}, streaming{false};
  std::thread client([&] {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "abc"}, {"max_tokens", 100000}, {"ignore_eos", true}, {"stream", true}}.dump();
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      streaming = true;
      return !hang_up.load();
    };
    server().client().send(req);
  });
  while (!streaming.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto [status, r] = server().post("/v1/completions", good());
  hang_up = true;
  client.join();
  EXPECT_EQ(status, 429) << r.dump();
  EXPECT_NE(r["error"]["message"].get<std::string>().find("queue of waiting requests is full"), std::string::npos);
  for (int i = 0; i < 200 && metric("sambalm_live_sequences") != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto [ok, r2] = server().post("/v1/completions", good());
  EXPECT_EQ(ok, 200) << r2.dump();
}

}  // namespace

namespace {

// The command line: every numeric option is range-checked before the model is read, and a port in
// use is an error naming it.
TEST(ServeCli, NumericOptionsAreRangeChecked) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--port 70000", "--port: must be an integer in [0, 65535]"},
      {"--max-batch 0", "--max-batch: must be an integer in [1, 4096]"},
      {"--max-queue -1", "--max-queue: must be an integer in [0, 65536]"},
      {"--max-prompt-tokens 0", "--max-prompt-tokens: must be an integer"},
      {"--max-tokens abc", "--max-tokens: must be an integer"},
      {"--max-body-bytes 10", "--max-body-bytes: must be an integer in [1024"},
      {"--chunk 0", "--chunk: must be an integer in [1, 65536]"},
      {"--threads 0", "--threads: must be an integer in [1, 1024]"}};
  for (const auto& [args, msg] : bad) {
    std::string out;
    EXPECT_NE(test::run_cli("serve --model /nonexistent " + args, &out), 0) << args;
    EXPECT_NE(out.find(msg), std::string::npos) << args << ": " << out;
  }
  ASSERT_GT(server().port, 0) << server().log();
  std::string out;
  EXPECT_EQ(
      test::run_cli("serve --model " + test::serve_model_dir("serve_port") + " --port " + std::to_string(server().port),
                    &out),
      1);
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + std::to_string(server().port)), std::string::npos) << out;
}

}  // namespace
