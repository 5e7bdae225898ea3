// UTF-8 helpers shared by the tokenizer and the chat-template renderer.
//
// All functions are pure and thread-safe. Byte strings are std::string / std::string_view holding
// arbitrary bytes; "valid" means well-formed UTF-8 as defined by Unicode (no surrogates, no
// overlong forms, nothing above U+10FFFF).
#ifndef RLVR_POLICY_TEXT_UNICODE_H_
#define RLVR_POLICY_TEXT_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rlvr::policy {

// Returns true if `text` is well-formed UTF-8.
bool IsValidUtf8(std::string_view text);

// Returns `text` with every maximal ill-formed subsequence replaced by U+FFFD, the policy of
// Unicode's "substitution of maximal subparts" that Rust's String::from_utf8_lossy and Python's
// bytes.decode("utf-8", "replace") both follow. Valid input is returned unchanged.
std::string ToValidUtf8(std::string_view text);

// Decodes the code point starting at `text[pos]` of valid UTF-8 and stores its byte length in
// `*len`. Precondition: `pos < text.size()` and `text` is valid UTF-8.
char32_t DecodeUtf8At(std::string_view text, size_t pos, size_t* len);

// Appends the UTF-8 encoding of `cp` (which must be a Unicode scalar value) to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// The Unicode White_Space property (what Rust's char::is_whitespace and Python's str.isspace
// test, apart from Python also counting U+001C..U+001F).
bool IsUnicodeWhitespace(char32_t cp);

// Unicode normalization forms, implemented with ICU.
enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };

// Normalizes valid UTF-8 `text`. ASCII-only text is returned without calling ICU. Fails with
// Internal only if ICU cannot load its data.
absl::StatusOr<std::string> Normalize(std::string_view text, NormalizationForm form);

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_TEXT_UNICODE_H_
