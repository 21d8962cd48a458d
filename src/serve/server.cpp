#include "serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <random>

#include "core/error.h"
#include "serve/tokenize_api.h"

namespace sambalm::serve {

using nlohmann::json;

namespace {

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param = {}, const std::string& code = {}) {
  res.status = status;
  res.set_content(dump(error_body(message, type, param, code)), "application/json");
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

// The metrics label of a path: the routes by name, anything else as "other" (bounded label values).
std::string route_label(const std::string& path) {
  for (const char* r : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics",
                        "/tokenizer_info", "/tokenize", "/detokenize"})
    if (path == r) return path;
  return "other";
}

// What a streaming response carries between calls of its content provider.
struct StreamState {
  ApiRequest req;
  std::string id, model;
  int64_t created = 0;
  bool first = true, echo_sent = false;
  size_t offset = 0;  // text sent so far (completions' text_offset)
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};

// Called again and again by httplib until it returns false or calls sink.done(). Waits a little for
// tokens; while none come it writes an SSE comment now and then, which is how a client that went
// away is noticed (the write fails) and its slot freed even before it would get a token.
bool stream_step(StreamState& s, const Tokenizer* tok, httplib::DataSink& sink) {
  Job& j = *s.req.jobs[0];
  std::string text, reason, error;
  std::vector<TokenInfo> tokens;
  bool finished = false;
  {
    std::unique_lock<std::mutex> lock(j.mu);
    j.cv.wait_for(lock, std::chrono::milliseconds(100),
                  [&] { return !j.tokens.empty() || j.finished || (s.req.echo && j.prompt_done && !s.echo_sent); });
    if (s.req.echo && j.prompt_done && !s.echo_sent) {
      text = s.req.prompt_texts[0];
      if (s.req.logprobs >= 0) tokens = j.prompt_info;
      s.echo_sent = true;
    }
    while (!j.tokens.empty()) {
      text += j.tokens.front().text;
      if (s.req.logprobs >= 0) tokens.push_back(std::move(j.tokens.front()));
      j.tokens.pop_front();
    }
    finished = j.finished;
    reason = j.finish_reason;
    error = j.error;
  }
  std::string out;
  if (!text.empty() || !tokens.empty() || (s.first && s.req.chat)) {
    out += sse(stream_chunk(s.req, tok, s.id, s.created, s.model, text, tokens, "", s.first, s.offset));
    s.first = false;
    s.offset += text.size();
  }
  if (finished) {
    if (!error.empty())
      out += sse(error_body(error, "server_error"));
    else
      out += sse(stream_chunk(s.req, tok, s.id, s.created, s.model, "", {}, reason, s.first, s.offset));
    out += "data: [DONE]\n\n";
  } else if (out.empty() && std::chrono::steady_clock::now() - s.last_write > std::chrono::milliseconds(500)) {
    out = ": waiting\n\n";
  }
  if (!out.empty()) {
    if (!sink.write(out.data(), out.size())) return false;
    s.last_write = std::chrono::steady_clock::now();
  }
  if (finished) sink.done();
  return true;
}

}  // namespace

Server::Server(Scheduler& scheduler, const Tokenizer* tok, Metrics& metrics, const ServerOptions& opt)
    : scheduler_(scheduler), tok_(tok), metrics_(metrics), opt_(opt), http_(std::make_unique<httplib::Server>()) {
  const size_t threads = size_t(std::max<int64_t>(opt_.http_threads, 2));
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(size_t(opt_.max_body_bytes));
  // httplib's default also sets SO_REUSEPORT, with which a second server binds a port already in use
  // and the two share its connections; a port in use must be an error instead.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  install_routes();
}

Server::~Server() = default;

int Server::bind() {
  int port = opt_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(opt_.host);
    SAMBALM_CHECK(port > 0, "serve: cannot listen on {} (any port)", opt_.host);
  } else {
    SAMBALM_CHECK(http_->bind_to_port(opt_.host, port),
                  "serve: cannot listen on {}:{} (in use, or not an address here)", opt_.host, port);
  }
  return port;
}

void Server::run() { http_->listen_after_bind(); }
void Server::stop() { http_->stop(); }

void Server::install_routes() {
  const std::string model = opt_.limits.model_ids[0];
  http_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    // Logged, then counted: once /metrics shows a request, its log line is written.
    std::fprintf(stderr, "%s %s %s %d\n", req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(), res.status);
    metrics_.count_request(route_label(req.path), res.status);
  });
  // Errors httplib answers itself (unknown route, body over the limit, unreadable request) get the
  // same error object as the API's.
  http_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(res, 413,
                 fmt::format("the request body is larger than the server's limit of {} bytes (--max-body-bytes)",
                             opt_.max_body_bytes),
                 "invalid_request_error", {}, "request_too_large");
    else if (res.status == 404)
      send_error(res, 404, fmt::format("no route {} {}", req.method, req.path), "invalid_request_error");
    else
      send_error(res, res.status, fmt::format("HTTP error {}", res.status), "invalid_request_error");
  });
  http_->Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http_->Get("/v1/models", [this, model](const httplib::Request&, httplib::Response& res) {
    json data = json::array({{{"id", model}, {"object", "model"}, {"created", 0}, {"owned_by", "sambalm"}}});
    res.set_content(dump({{"object", "list"}, {"data", data}}), "application/json");
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  auto completions = [this, model](bool chat) {
    return [this, model, chat](const httplib::Request& hreq, httplib::Response& res) {
      try {
        const uint64_t n = request_count_.fetch_add(1);
        ApiRequest req = parse_request(hreq.body, chat, tok_, opt_.limits, std::random_device{}() ^ (n << 32));
        if (!scheduler_.submit(req.jobs))
          throw ApiError(429, "the server is busy: its queue of waiting requests is full (--max-queue); retry later",
                         {}, "queue_full", "server_busy");
        const std::string id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", n);
        const int64_t created = int64_t(std::time(nullptr));
        if (req.stream) {
          auto s = std::make_shared<StreamState>(StreamState{std::move(req), id, model, created});
          res.set_header("Cache-Control", "no-cache");
          res.set_chunked_content_provider(
              "text/event-stream", [this, s](size_t, httplib::DataSink& sink) { return stream_step(*s, tok_, sink); },
              [s](bool success) {
                if (!success) s->req.jobs[0]->cancelled = true;  // the client went away: free the slot
              });
          return;
        }
        std::string error;
        for (auto& j : req.jobs) {
          std::unique_lock<std::mutex> lock(j->mu);
          j->cv.wait(lock, [&] { return j->finished; });
          if (!j->error.empty()) error = j->error;
        }
        if (!error.empty()) return send_error(res, 500, error, "server_error");
        res.set_content(dump(completion_response(req, tok_, id, created, model)), "application/json");
      } catch (const ApiError& e) {
        send_error(res, e.status, e.what(), e.type, e.param, e.code);
      } catch (const std::exception& e) {
        send_error(res, 500, e.what(), "server_error");
      }
    };
  };
  http_->Post("/v1/completions", completions(false));
  http_->Post("/v1/chat/completions", completions(true));
  if (tok_) install_tokenizer_routes();
}

void Server::install_tokenizer_routes() {
  // Without a tokenizer these routes do not exist (404), so a harness in `auto` mode looks elsewhere.
  auto answer = [](httplib::Response& res, const std::function<json()>& f) {
    try {
      res.set_content(dump(f()), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type, e.param, e.code);
    } catch (const std::exception& e) {
      send_error(res, 500, e.what(), "server_error");
    }
  };
  http_->Get("/tokenizer_info", [this, answer](const httplib::Request&, httplib::Response& res) {
    answer(res, [&] { return tokenizer_info(*tok_); });
  });
  http_->Post("/tokenize", [this, answer](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { return tokenize(*tok_, req.body, opt_.limits.max_prompt_tokens); });
  });
  http_->Post("/detokenize", [this, answer](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { return detokenize(*tok_, req.body); });
  });
}

}  // namespace sambalm::serve
