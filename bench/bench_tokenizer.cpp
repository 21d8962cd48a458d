// Tokenizer and `sambalm prepare` throughput on a corpus (default: data/corpus.txt from
// scripts/get_corpus.sh, with the bpe_tiny fixture tokenizer).
//
//   bench_tokenizer [CORPUS] [TOKENIZER] [THREADS]   (run from the repository root; defaults:
//   data/corpus.txt, ../shared/fixtures/bpe_tiny/tokenizer.json, 2)
//
// Reports (best of 3 runs): single-thread encode of the whole corpus (the tokenizer alone), and
// prepare_shards end to end with THREADS threads (reading, encoding, writing shards). Both in
// tokens/s and MB/s of input, by wall-clock time and by CPU time of the process (on a shared,
// loaded machine the CPU-time figure is the steadier one).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "bench_timing.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"
#include "train/prepare_data.h"

int main(int argc, char** argv) {
  using namespace sambalm;
  using bench::best_of, bench::Timing;
  std::string corpus = argc > 1 ? argv[1] : "data/corpus.txt";
  std::string tokenizer = argc > 2 ? argv[2] : "../shared/fixtures/bpe_tiny/tokenizer.json";
  int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  try {
    auto tok = load_tokenizer(tokenizer);
    auto file = MappedFile::open(corpus);
    std::string_view text(reinterpret_cast<const char*>(file->data()), file->size());
    const double mb = double(text.size()) / 1e6;

    Timing enc = best_of(3, [&] {
      std::vector<int32_t> ids;
      ids.reserve(text.size() / 2);
      for (auto [b, e] : tok->document_pieces(text, 1 << 20)) tok->encode(text.substr(b, e - b), ids);
      return uint64_t(ids.size());
    });

    std::string out = (std::filesystem::temp_directory_path() / "sambalm_bench_prepare").string();
    Timing prep = best_of(3, [&] {
      PrepareOptions o;
      o.inputs = {corpus};
      o.output_dir = out;
      o.overwrite = true;
      o.threads = threads;
      PrepareResult r = prepare_shards(*tok, o);
      return r.train_tokens + r.val_tokens;
    });
    std::filesystem::remove_all(out);

    std::printf("corpus %s: %.2f MB; tokenizer %s (%s, vocab %d)\n", corpus.c_str(), mb, tokenizer.c_str(),
                tok->kind().c_str(), tok->vocab_size());
    std::printf("| measurement | tokens | wall s | tokens/s (wall) | MB/s (wall) | CPU s | tokens/s per CPU s |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
    bench::print_timing_row("encode, 1 thread", enc, mb);
    bench::print_timing_row("prepare_shards, " + std::to_string(threads) + " threads", prep, mb);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
