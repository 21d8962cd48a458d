// Decode state files: a sequence's DecodeState plus the token ids it has consumed, so a conversation
// or a document can be resumed without reading it again. Format: docs/FORMATS.md "Decode state file".
//
// A state only makes sense for the model that produced it: the file records a hash of the model's
// config (architecture) and a hash of a sample of its weights, and loading checks both, the layout
// size, the token ids (< padded vocab) and a checksum of the whole file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "infer/decode_model.h"

namespace sambalm {

// 64-bit FNV-1a of the config's JSON form / of every k-th parameter (at most 1M of them).
uint64_t config_fingerprint(const ModelConfig& cfg);

// Writes `path` atomically. `tokens` are the ids seen so far (may be empty), oldest first; the last
// `n_pending` of them were not fed to the state yet (Session::pending: the last generated token, so
// that continuing without a new prompt starts by feeding it and has logits to sample from).
void save_decode_state(const std::string& path, const DecodeModel& model, const DecodeState& st,
                       std::span<const int32_t> tokens, size_t n_pending = 0);
// Replaces st (which must come from model.new_state()) and tokens with the file's contents, and
// `pending` (when given) with the trailing ids of `tokens` that the state has not consumed.
// Throws Error naming the file: not a state file, truncated, checksum mismatch, another model,
// other weights, bad token ids.
void load_decode_state(const std::string& path, const DecodeModel& model, DecodeState& st, std::vector<int32_t>& tokens,
                       std::vector<int32_t>* pending = nullptr);

// What a state file must match to be loaded into a model's state (load_decode_state takes it from
// the model): the model's name (for messages), its fingerprints and its state's sizes.
struct DecodeStateTarget {
  std::string model_name;
  uint64_t config_hash = 0, weights_hash = 0;
  int64_t floats = 0, max_context = 0, padded_vocab = 0;
};
// The parser behind load_decode_state, on a state file's bytes (`path` names it in errors): checks
// them against `want`, then copies the state into `state` (want.floats floats, in DecodeState::copy_out
// order) and the token ids into `tokens`, sets *n_pending_out (when given) to how many trailing ids the
// state has not consumed, and returns the position. Nothing is written when it throws.
// The target of a CPU DecodeModel, and of a model whose parameters and states live elsewhere (a GPU's
// DeviceDecodeModel): made from its config, the host copy of its fp32 parameters (ParamStore layout,
// the master copy in bf16) and its decode layout.
DecodeStateTarget decode_state_target(const DecodeModel& model);
DecodeStateTarget decode_state_target(const ModelConfig& cfg, const std::vector<ParamEntry>& entries,
                                      const float* host_params, int64_t param_floats, const DecodeLayout& layout);
// save / load as above against a target: the state may live in any pool (the host's or a GPU's, fp32 or
// bf16: its body is written and read as fp32), so a file saved from one device loads on the other.
void save_decode_state(const std::string& path, const DecodeStateTarget& model, const DecodeState& st,
                       std::span<const int32_t> tokens, size_t n_pending = 0);
void load_decode_state(const std::string& path, const DecodeStateTarget& model, DecodeState& st,
                       std::vector<int32_t>& tokens, std::vector<int32_t>* pending = nullptr);
int64_t parse_decode_state(const uint8_t* p, size_t size, const std::string& path, const DecodeStateTarget& want,
                           float* state, std::vector<int32_t>& tokens, int64_t* n_pending_out = nullptr);

}  // namespace sambalm
