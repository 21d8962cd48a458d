// The decode drivers' argument checks (decode_checks.h).
#include "infer/decode_checks.h"

#include "core/error.h"

namespace sambalm {

void check_token_ids(const int32_t* tokens, int64_t n, int64_t V, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    SAMBALM_CHECK(tokens[i] >= 0 && tokens[i] < V, "{}: token id {} at position {} is outside the vocabulary [0, {})",
                  what, tokens[i], i, V);
}

void check_prefill(const DecodeState& st, const DecodePool& pool, const int32_t* tokens, int64_t n, int64_t V) {
  SAMBALM_CHECK(n > 0, "prefill: no tokens to consume");
  SAMBALM_CHECK(st.valid() && st.pool() == &pool, "prefill: the decode state belongs to another model");
  check_token_ids(tokens, n, V, "prefill");
  const int64_t max_context = pool.layout()->max_context;
  if (max_context > 0)
    SAMBALM_CHECK(st.pos() + n <= max_context,
                  "prefill: {} + {} tokens exceed the full-attention cache of {} positions (max context)", st.pos(), n,
                  max_context);
}

void collect_step_slots(DecodeState* const* states, int64_t B, const DecodePool& pool, std::vector<int32_t>& slots) {
  SAMBALM_CHECK(B > 0, "decode step: empty batch");
  SAMBALM_CHECK(B <= static_cast<int64_t>(slots.size()), "decode step: {} sequences, the pool holds {}", B,
                slots.size());
  for (int64_t b = 0; b < B; ++b) {
    SAMBALM_CHECK(states[b]->valid() && states[b]->pool() == &pool, "decode step: state {} belongs to another model",
                  b);
    slots[b] = states[b]->slot();
  }
}

void collect_step_positions(const int32_t* slots, int64_t B, const int32_t* tokens, int64_t V, DecodePool& pool,
                            std::vector<int64_t>& pos) {
  SAMBALM_CHECK(B > 0, "decode step: empty batch");
  SAMBALM_CHECK(B <= static_cast<int64_t>(pos.size()), "decode step: {} sequences, the pool holds {}", B, pos.size());
  check_token_ids(tokens, B, V, "decode step");
  const int64_t max_context = pool.layout()->max_context;
  const int64_t* positions = pool.positions();
  for (int64_t b = 0; b < B; ++b) {
    SAMBALM_CHECK(slots[b] >= 0 && slots[b] < pool.slots(), "decode step: slot {} outside the pool of {}", slots[b],
                  pool.slots());
    // Two rows of one slot in a step would race on its state (each reads the state the other writes).
    for (int64_t c = 0; c < b; ++c)
      SAMBALM_CHECK(slots[c] != slots[b], "decode step: slot {} appears twice in one step", slots[b]);
    pos[b] = positions[slots[b]];
    if (max_context > 0)
      SAMBALM_CHECK(pos[b] < max_context,
                    "decode step: sequence {} reached the full-attention cache of {} positions (max context)", b,
                    max_context);
  }
}

}  // namespace sambalm
