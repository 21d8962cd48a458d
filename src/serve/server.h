// The HTTP side of `sambalm serve` (cpp-httplib): routes, request logging, streaming. Handler threads
// parse and validate a request (serve/api.h), hand its jobs to the scheduler and wait for them, or
// stream their tokens as server-sent events; the scheduler thread does all the model work.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "serve/api.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"

namespace httplib {
class Server;
}

namespace sambalm::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  int64_t max_body_bytes = 1 << 20;
  int64_t http_threads = 16;  // handler threads (each streaming client holds one)
  ApiLimits limits;
};

class Server {
 public:
  Server(Scheduler& scheduler, const Tokenizer* tok, Metrics& metrics, const ServerOptions& opt);
  ~Server();
  // Binds the socket and returns the port (the chosen one for port 0). Error when it cannot.
  int bind();
  // Serves until stop() (from another thread).
  void run();
  void stop();

 private:
  void install_routes();
  void install_tokenizer_routes();

  Scheduler& scheduler_;
  const Tokenizer* tok_;
  Metrics& metrics_;
  ServerOptions opt_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<uint64_t> request_count_{0};
};

}  // namespace sambalm::serve
