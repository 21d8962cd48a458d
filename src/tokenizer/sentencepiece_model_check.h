// Checks on a SentencePiece model file (tokenizer.model) before it is handed to libsentencepiece.
//
// libsentencepiece parses the ModelProto safely, but trusts the precompiled character maps of its
// normalizer and denormalizer: a double-array trie it walks without bounds checks, leaf values that
// index a string of NUL-terminated replacements, and at most 32 matches along one path (it counts
// further matches into a fixed-size array on the stack). A corrupt map makes encode or decode read
// outside the file's memory, so such a map is refused here with an Error instead: every trie node
// reachable by some input stays in the array, every leaf points into the strings before a NUL,
// there is no cycle and no path with more than 32 leaves. Valid maps (nmt_nfkc, nfkc_cf, maps built
// from a rule TSV) pass unchanged.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sambalm {

// It also refuses a piece that is empty or holds a NUL byte: the library keys its tries by C string
// and throws an exception of its own (or aborts) on an empty key.
//
// Throws Error naming `path` when the protobuf wire format is malformed, a piece (field 1) is empty
// or holds a NUL byte, or a precompiled_charsmap of normalizer_spec (field 3) or denormalizer_spec
// (field 5) fails the checks above.
void check_sentencepiece_model(std::string_view bytes, const std::string& path);

// What an encoder needs from a ModelProto, with the proto's defaults for fields that are absent.
struct SentencePieceModelInfo {
  enum Type { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  enum ModelType { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };
  struct Piece {
    std::string piece;
    float score = 0;
    int type = kNormal;
  };
  std::vector<Piece> pieces;
  int model_type = kUnigram;
  bool byte_fallback = false, treat_whitespace_as_suffix = false;
  std::string normalizer_name;
  bool has_charsmap = false;  // a precompiled character map (nmt_nfkc and the like) to apply
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};
// Reads those fields (trainer_spec, normalizer_spec, pieces). Throws Error naming `path` on a
// malformed wire format; call check_sentencepiece_model first for the other checks.
SentencePieceModelInfo read_sentencepiece_model(std::string_view bytes, const std::string& path);

}  // namespace sambalm
