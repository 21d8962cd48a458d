// `sambalm serve` against the engine's other front ends: greedy completions equal `sambalm generate`,
// echoed logprobs equal log-softmax of `sambalm forward`'s logits, streaming gives the text of the
// non-streaming answer, concurrent requests (batched together) equal their sequential answers, chat
// renders the documented plain format, and the read-only routes answer.
#include <chrono>
#include <cmath>
#include <thread>

#include "io/safetensors.h"
#include "serve_testing.h"

using namespace sambalm;
using nlohmann::json;

namespace {

struct ServeCase {
  std::string model = test::serve_model_dir("serve");
};

ServeCase& shared_case() {
  static ServeCase c;
  return c;
}

std::string text_of(const json& r) { return r["choices"][0]["text"].get<std::string>(); }

TEST(Serve, GreedyCompletionEqualsGenerate) {
  test::ServeProcess s(shared_case().model, {});
  ASSERT_GT(s.port, 0) << s.log();
  for (const std::string prompt : {"Hello", "The quick brown fox"}) {
    std::string out;
    ASSERT_EQ(test::run_cli("generate -m " + shared_case().model + " -p '" + prompt + "' -n 12 --json -q", &out), 0)
        << out;
    const json gen = json::parse(out.substr(out.find('{')));
    auto [status, r] = s.post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}});
    ASSERT_EQ(status, 200) << r.dump();
    EXPECT_FALSE(text_of(r).empty());
    EXPECT_EQ(text_of(r), gen["results"][0]["text"].get<std::string>()) << prompt;
    EXPECT_EQ(r["usage"]["completion_tokens"], 12);
    EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  }
}

TEST(Serve, EchoLogprobsEqualLogSoftmaxOfForward) {
  const std::string dir = test::temp_dir("serve_echo");
  // Longer than the attention window (4) and than the prefill chunk (3): the prompt's logits come from
  // several prefill calls spread over scheduler iterations.
  const std::vector<int64_t> ids = {72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33};
  const int64_t T = int64_t(ids.size()), V = 256;
  Tensor in = Tensor::zeros(DType::I64, {1, T});
  std::copy(ids.begin(), ids.end(), in.data<int64_t>());
  write_safetensors(dir + "/in.safetensors", {{"input_ids", in}});
  std::string out;
  ASSERT_EQ(
      test::run_cli(
          "forward -m " + shared_case().model + " -i " + dir + "/in.safetensors -o " + dir + "/out.safetensors", &out),
      0)
      << out;
  auto f = read_safetensors(dir + "/out.safetensors");
  const float* logits = f.get("logits").data<float>();

  test::ServeProcess s(shared_case().model, {"--chunk", "3"});
  ASSERT_GT(s.port, 0) << s.log();
  // As lm-eval's local-completions scores a text: echo, no new tokens, one alternative per token.
  auto [status, r] = s.post(
      "/v1/completions", json{{"prompt", ids}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 1}, {"temperature", 0}});
  ASSERT_EQ(status, 200) << r.dump();
  const json& lp = r["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), size_t(T)) << r.dump();
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(r["usage"]["completion_tokens"], 0);
  EXPECT_EQ(text_of(r), "Hello, world!");
  for (int64_t t = 1; t < T; ++t) {
    const float* row = logits + (t - 1) * V;
    double mx = row[0], z = 0;
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
    const double want = double(row[ids[t]]) - mx - std::log(z);
    EXPECT_NEAR(lp["token_logprobs"][t].get<double>(), want, 1e-4) << "token " << t;
    // The one alternative is the most likely token: its logprob is the row's largest.
    ASSERT_EQ(lp["top_logprobs"][t].size(), 1u);
    EXPECT_NEAR(lp["top_logprobs"][t].begin().value().get<double>(), mx - mx - std::log(z), 1e-4) << "token " << t;
  }
}

TEST(Serve, StreamingGivesTheNonStreamingText) {
  test::ServeProcess s(shared_case().model, {});
  ASSERT_GT(s.port, 0) << s.log();
  for (bool chat : {false, true}) {
    json body = {{"max_tokens", 24}, {"temperature", 0.8}, {"seed", 11}};
    if (chat)
      body["messages"] = json::array({{{"role", "user"}, {"content", "Tell me"}}});
    else
      body["prompt"] = "Once upon a time";
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    auto [status, whole] = s.post(path, body);
    ASSERT_EQ(status, 200) << whole.dump();
    body["stream"] = true;
    bool done = false;
    auto events = s.stream(path, body, &done);
    EXPECT_TRUE(done);
    ASSERT_GE(events.size(), 2u);
    std::string text, finish;
    for (const auto& e : events) {
      const json& c = e["choices"][0];
      text += chat ? c["delta"].value("content", "") : c["text"].get<std::string>();
      if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
    }
    const json& c = whole["choices"][0];
    EXPECT_EQ(text, chat ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>()) << path;
    EXPECT_EQ(finish, c["finish_reason"].get<std::string>());
  }
}

TEST(Serve, ConcurrentRequestsEqualTheirSequentialAnswers) {
  // Four slots for eight clients: requests share decode steps, and some wait in the queue.
  test::ServeProcess s(shared_case().model, {"--max-batch", "4", "--max-queue", "8"});
  ASSERT_GT(s.port, 0) << s.log();
  auto body = [](int i) {
    return json{{"prompt", "Prompt number " + std::to_string(i) + std::string(size_t(i), '!')},
                {"max_tokens", 10 + 3 * i},
                {"temperature", i % 2 ? 0.0 : 0.9},
                {"seed", 100 + i},
                {"logprobs", 2}};
  };
  std::vector<json> sequential(8), concurrent(8);
  for (int i = 0; i < 8; ++i) {
    auto [status, r] = s.post("/v1/completions", body(i));
    ASSERT_EQ(status, 200) << r.dump();
    sequential[i] = r["choices"][0];
  }
  std::vector<int> statuses(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      auto [status, r] = s.post("/v1/completions", body(i));
      statuses[i] = status;
      if (status == 200) concurrent[i] = r["choices"][0];
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(statuses[i], 200) << i;
    EXPECT_EQ(concurrent[i]["text"], sequential[i]["text"]) << i;
    EXPECT_EQ(concurrent[i]["logprobs"]["tokens"], sequential[i]["logprobs"]["tokens"]) << i;
    const auto& a = concurrent[i]["logprobs"]["token_logprobs"];
    const auto& b = sequential[i]["logprobs"]["token_logprobs"];
    ASSERT_EQ(a.size(), b.size());
    for (size_t t = 0; t < a.size(); ++t) EXPECT_NEAR(a[t].get<double>(), b[t].get<double>(), 1e-4) << i;
  }
}

TEST(Serve, ChatRendersThePlainFormat) {
  test::ServeProcess s(shared_case().model, {});
  ASSERT_GT(s.port, 0) << s.log();
  auto [cs, chat] =
      s.post("/v1/chat/completions",
             json{{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
                  {"max_tokens", 16},
                  {"temperature", 0}});
  ASSERT_EQ(cs, 200) << chat.dump();
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  auto [ps, plain] = s.post("/v1/completions", json{{"prompt", "System: Be brief.\nUser: Hi\nAssistant:"},
                                                    {"max_tokens", 16},
                                                    {"temperature", 0},
                                                    {"stop", "\nUser:"}});
  ASSERT_EQ(ps, 200) << plain.dump();
  EXPECT_EQ(chat["choices"][0]["message"]["content"], plain["choices"][0]["text"]);
  EXPECT_EQ(chat["usage"]["prompt_tokens"], plain["usage"]["prompt_tokens"]);
}

TEST(Serve, ModelsHealthAndMetricsAnswer) {
  test::ServeProcess s(shared_case().model, {"--model-name", "tiny"});
  ASSERT_GT(s.port, 0) << s.log();
  auto c = s.client();
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "tiny");
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto [status, r] = s.post("/v1/completions", json{{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 5}});
  ASSERT_EQ(status, 200) << r.dump();
  // The server counts and logs a request once its response has gone out, so the client may ask for
  // the metrics a moment before that: wait (up to 10 s) for the completion to be counted.
  const std::string counted = "sambalm_requests_total{path=\"/v1/completions\",status=\"200\"} 1";
  auto metrics = c.Get("/metrics");
  for (int i = 0; i < 200 && metrics && metrics->body.find(counted) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    metrics = c.Get("/metrics");
  }
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find(counted), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("sambalm_generated_tokens_total 5"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("sambalm_prompt_tokens_total 3"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("sambalm_queue_depth 0"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("sambalm_generated_tokens_per_second "), std::string::npos) << metrics->body;
  // One line per request on stderr (written when the request is counted).
  EXPECT_NE(s.log().find("POST /v1/completions 200"), std::string::npos) << s.log();
}

}  // namespace
