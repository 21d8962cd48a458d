// A decode state moved between engines through a state file, for the tests of state files across the
// CPU engine, the device driver on the host and the GPU.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "infer/decode_model.h"
#include "infer/state_file.h"

namespace sambalm::test {

// `from` prefills tok[0..split) into a fresh state, which is saved to `path` as `save_as` describes it
// (the engine itself or a DecodeStateTarget); a fresh state of `to` loads the file as `load_as` does.
// Expects the loaded state at `split` with those tokens (`what` names the case); returns {saved, loaded}.
template <typename From, typename SaveAs, typename To, typename LoadAs>
std::pair<DecodeState, DecodeState> through_state_file(From& from, const SaveAs& save_as, To& to, const LoadAs& load_as,
                                                       const std::vector<int32_t>& tok, int64_t split,
                                                       const std::string& path, const std::string& what = "") {
  const std::span<const int32_t> seen(tok.data(), size_t(split));
  DecodeState a = from.new_state();
  from.prefill(a, tok.data(), split, nullptr, nullptr);
  save_decode_state(path, save_as, a, seen);
  DecodeState b = to.new_state();
  std::vector<int32_t> ids;
  load_decode_state(path, load_as, b, ids);
  EXPECT_EQ(b.pos(), split) << what;
  EXPECT_EQ(ids, std::vector<int32_t>(seen.begin(), seen.end())) << what;
  return {std::move(a), std::move(b)};
}

}  // namespace sambalm::test
