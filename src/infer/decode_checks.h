// The argument checks that every decode driver (DecodeModel on the CPU, DeviceDecodeModel on a GPU)
// makes before it touches a state: token ids inside the vocabulary, states of this pool, slots in
// range and not repeated within one step, positions inside the full-attention cache. Each throws
// Error with the call's name and leaves the states as they were.
#pragma once

#include <cstdint>
#include <vector>

#include "infer/decode_state.h"

namespace sambalm {

// Every tokens[i] (i < n) in [0, V).
void check_token_ids(const int32_t* tokens, int64_t n, int64_t V, const char* what);

// A prefill of tokens[0..n) into `st`, a state of `pool`.
void check_prefill(const DecodeState& st, const DecodePool& pool, const int32_t* tokens, int64_t n, int64_t V);

// The slots of states[0..B) (states of `pool`) into slots[0..B); slots.size() is the step's capacity.
void collect_step_slots(DecodeState* const* states, int64_t B, const DecodePool& pool, std::vector<int32_t>& slots);

// A step of B sequences by slot id: each slot's position into pos[0..B); pos.size() is the capacity.
void collect_step_positions(const int32_t* slots, int64_t B, const int32_t* tokens, int64_t V, DecodePool& pool,
                            std::vector<int64_t>& pos);

}  // namespace sambalm
