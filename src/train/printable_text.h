// Text of an untrained model's samples, made safe to print. A sample is whatever bytes the model
// drew: early in training that includes ESC, carriage returns, backspaces and bytes that are not
// UTF-8, which a terminal would act on (move the cursor, change colours, retitle the window).
#pragma once

#include <string>
#include <string_view>

namespace sambalm {

// `text` with newlines and tabs kept, valid UTF-8 characters kept, and everything else written as
// an escape: C0 controls and DEL as \xNN (\r as \r), C1 controls (U+0080..U+009F) as \u00NN, a
// byte that is not part of valid UTF-8 as \xNN. A backslash stays a single backslash.
std::string printable_text(std::string_view text);

}  // namespace sambalm
