// The native SentencePiece-BPE encoder (tokenizer/sentencepiece_bpe.h) beside libsentencepiece on
// the same text, in one run: single-thread encode of the corpus cut into documents of about 4 KB
// (at line ends, as a JSON Lines corpus gives them), and the native encoder on THREADS threads.
// The ids of both are compared. Every run starts the native encoder's threads afresh, so its word
// cache starts empty.
//
//   bench_spm [CORPUS] [TOKENIZER_MODEL] [THREADS]   (run from the repository root; defaults:
//   data/corpus.txt, ../shared/fixtures/sp_tiny/tokenizer.model, 2)
//
// TOKENIZER_MODEL `train:N` first trains a BPE model of N pieces on CORPUS with libsentencepiece's
// trainer and Llama's options (byte fallback, digits split, no character map, whitespace kept as
// is, whitespace-only pieces allowed), for a figure at Llama's vocabulary size (32000).
//
// Best of 3 runs; tokens/s by wall-clock time and per CPU second of the process.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_timing.h"
#include "io/file.h"
#include "tokenizer/sentencepiece_bpe.h"
#include "tokenizer/sentencepiece_model_check.h"

int main(int argc, char** argv) {
  using namespace sambalm;
  using bench::best_of, bench::Timing;
  std::string corpus = argc > 1 ? argv[1] : "data/corpus.txt";
  std::string model = argc > 2 ? argv[2] : "../shared/fixtures/sp_tiny/tokenizer.model";
  int threads = argc > 3 ? std::max(1, std::atoi(argv[3])) : 2;
  try {
    const std::string text = read_text_file(corpus);
    if (model.starts_with("train:")) {
      const std::string prefix = (std::filesystem::temp_directory_path() / "sambalm_bench_spm").string();
      auto status = sentencepiece::SentencePieceTrainer::Train(
          std::unordered_map<std::string, std::string>{{"input", corpus},
                                                       {"model_prefix", prefix},
                                                       {"model_type", "bpe"},
                                                       {"vocab_size", model.substr(6)},
                                                       {"byte_fallback", "true"},
                                                       {"split_digits", "true"},
                                                       {"normalization_rule_name", "identity"},
                                                       {"remove_extra_whitespaces", "false"},
                                                       {"allow_whitespace_only_pieces", "true"},
                                                       {"character_coverage", "0.99995"},
                                                       {"minloglevel", "1"}});
      if (!status.ok()) throw std::runtime_error("training failed: " + status.ToString());
      model = prefix + ".model";
    }
    const std::string bytes = read_text_file(model);
    check_sentencepiece_model(bytes, model);
    sentencepiece::SentencePieceProcessor sp;
    if (!sp.LoadFromSerializedProto(bytes).ok()) throw std::runtime_error(model + ": libsentencepiece cannot load it");
    std::string why;
    auto native = SentencePieceBpe::create(read_sentencepiece_model(bytes, model), &why);
    if (!native) throw std::runtime_error(model + ": not covered by the native encoder: " + why);

    std::vector<std::string_view> docs;
    for (size_t b = 0; b < text.size();) {
      size_t e = text.find('\n', std::min(text.size(), b + 4096));
      e = e == std::string::npos ? text.size() : e + 1;
      docs.push_back(std::string_view(text).substr(b, e - b));
      b = e;
    }

    std::vector<int32_t> lib_ids, native_ids;
    Timing lib = best_of(3, [&] {
      lib_ids.clear();
      std::vector<int> ids;
      for (auto d : docs) {
        sp.Encode(d, &ids);
        lib_ids.insert(lib_ids.end(), ids.begin(), ids.end());
      }
      return uint64_t(lib_ids.size());
    });
    // Each run on fresh threads: the native encoder's per-thread word cache starts empty, as it
    // does for a corpus seen once.
    Timing nat = best_of(3, [&] {
      native_ids.clear();
      std::thread([&] {
        for (auto d : docs) native->encode(d, native_ids);
      }).join();
      return uint64_t(native_ids.size());
    });
    Timing par = best_of(3, [&] {
      std::vector<uint64_t> counts(size_t(threads), 0);
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          std::vector<int32_t> ids;
          for (size_t i = size_t(t); i < docs.size(); i += size_t(threads)) {
            ids.clear();
            native->encode(docs[i], ids);
            counts[size_t(t)] += ids.size();
          }
        });
      for (auto& th : pool) th.join();
      uint64_t n = 0;
      for (auto c : counts) n += c;
      return n;
    });

    const double mb = double(text.size()) / 1e6;
    std::printf("corpus %s: %.2f MB in %zu documents; model %s (vocab %d); ids %s\n", corpus.c_str(), mb, docs.size(),
                model.c_str(), sp.GetPieceSize(), lib_ids == native_ids ? "identical" : "DIFFER");
    std::printf("| encoder | tokens | wall s | tokens/s (wall) | MB/s (wall) | CPU s | tokens/s per CPU s |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
    bench::print_timing_row("libsentencepiece, 1 thread", lib, mb);
    bench::print_timing_row("native, 1 thread", nat, mb);
    bench::print_timing_row("native, " + std::to_string(threads) + " threads", par, mb);
    return lib_ids == native_ids ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
