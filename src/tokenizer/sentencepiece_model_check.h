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

namespace sambalm {

// It also refuses a piece that is empty or holds a NUL byte: the library keys its tries by C string
// and throws an exception of its own (or aborts) on an empty key.
//
// Throws Error naming `path` when the protobuf wire format is malformed, a piece (field 1) is empty
// or holds a NUL byte, or a precompiled_charsmap of normalizer_spec (field 3) or denormalizer_spec
// (field 5) fails the checks above.
void check_sentencepiece_model(std::string_view bytes, const std::string& path);

}  // namespace sambalm
