// Helpers for the tests of `sambalm serve`: a tiny byte-level model directory, the server as a child
// process on 127.0.0.1 (--port 0, the port read from its stdout), and JSON requests to it.
#pragma once

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/model_dir.h"
#include "model/weights.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace sambalm::test {

// A random 2-block Samba over bytes (vocab 256, window 4) saved as a model directory with the bytes
// tokenizer recorded, so text prompts work.
inline std::string serve_model_dir(const std::string& tag) {
  const std::string dir = temp_dir(tag) + "/model";
  SambaShape sh;
  sh.n_layer = 2;
  sh.vocab = 256;
  sh.padded = 256;
  sh.window = 4;
  ModelConfig cfg = small_samba("serve_bytes", sh);
  ParamStore store(param_specs(cfg));
  fill_random_params(store, 7);
  save_model_dir(dir, cfg, store);
  std::ofstream(dir + "/" + kTokenizerConfigFile) << bytes_tokenizer_config();
  return dir;
}

// `sambalm serve --model DIR --port 0 ARGS...` running until destroyed (SIGTERM).
struct ServeProcess {
  pid_t pid = -1;
  int port = 0;
  std::string err_path;

  ServeProcess(const std::string& model, const std::vector<std::string>& extra) {
    err_path = temp_dir("serve_log") + "/stderr.txt";
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      dup2(open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
      std::vector<std::string> args = {SAMBALM_CLI_PATH, "serve", "--model", model, "--port", "0", "--threads", "1"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(SAMBALM_CLI_PATH, argv.data());
      _exit(127);
    }
    close(fds[1]);
    // The first line on stdout is the port.
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    char c = 0;
    while (poll(&p, 1, 60000) > 0 && read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    port = line.empty() ? 0 : std::atoi(line.c_str());
  }
  ~ServeProcess() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      int st = 0;
      waitpid(pid, &st, 0);
    }
  }
  std::string log() const {
    std::ifstream in(err_path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120);
    return c;
  }
  // POST `body` (any text) to `path`: status and parsed JSON body (null when not JSON).
  std::pair<int, nlohmann::json> post(const std::string& path, const std::string& body) const {
    auto res = client().Post(path.c_str(), body, "application/json");
    if (!res) return {0, nullptr};
    return {res->status, nlohmann::json::parse(res->body, nullptr, false)};
  }
  std::pair<int, nlohmann::json> post(const std::string& path, const nlohmann::json& body) const {
    return post(path, body.dump());
  }
  // Server-sent events of a streaming POST: the JSON of each `data:` line before [DONE] (and whether
  // [DONE] came).
  std::vector<nlohmann::json> stream(const std::string& path, const nlohmann::json& body, bool* done) const {
    auto res = client().Post(path.c_str(), body.dump(), "application/json");
    std::vector<nlohmann::json> events;
    *done = false;
    if (!res) return events;
    size_t at = 0;
    while ((at = res->body.find("data: ", at)) != std::string::npos) {
      const size_t end = res->body.find("\n\n", at);
      const std::string data = res->body.substr(at + 6, end - at - 6);
      if (data == "[DONE]")
        *done = true;
      else
        events.push_back(nlohmann::json::parse(data, nullptr, false));
      at = end;
    }
    return events;
  }
};

}  // namespace sambalm::test
