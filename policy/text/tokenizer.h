// Hugging Face `tokenizer.json` byte-level BPE tokenizer (GPT-2, Qwen2/Qwen3, Llama-3,
// DeepSeek-V3 family), producing the same ids as the `tokenizers` package.
//
// Supported parts of the file (anything else is an Unimplemented error naming the key):
//   normalizer:     null, NFC, NFD, NFKC, NFKD, or a Sequence of those.
//   pre_tokenizer:  ByteLevel (optionally with its GPT-2 regex and add_prefix_space), or a
//                   Sequence of Split steps (Regex or String pattern, any behavior, invert)
//                   ending with ByteLevel. Regexes run on PCRE2 with UTF+UCP (JIT when
//                   available). PCRE2's UCP classes (\s, \p{L}, \p{N}) agree with the
//                   Oniguruma ones `tokenizers` uses on every fixture text, U+0085 included.
//   model:          BPE with merges as "a b" strings or [a, b] pairs, ignore_merges; dropout,
//                   unk_token, byte_fallback and subword prefixes/suffixes must be unset
//                   (or empty strings).
//   added_tokens:   matched leftmost-longest before pre-tokenization, first the ones with
//                   normalized=false on the raw text, then the normalized ones on the normalized
//                   text, honouring lstrip, rstrip and single_word; special marks which are
//                   dropped by skip_special_tokens.
//   post_processor: null, ByteLevel, TemplateProcessing (its `single` template) or a Sequence
//                   of those; applied only when add_special_tokens is true.
//   decoder:        ByteLevel (bytes joined, then invalid UTF-8 replaced by U+FFFD), or null.
//   truncation and padding are ignored.
//
// Encode input that is not valid UTF-8 is first repaired with ToValidUtf8 (each maximal invalid
// subpart becomes U+FFFD), which is what Python's bytes.decode("utf-8", "replace") gives before
// calling `tokenizers`.
//
// Thread safety: a Tokenizer is immutable after loading except for an internal word cache that
// is guarded by a mutex, so Encode/Decode may be called from several threads at once.
#ifndef RLVR_POLICY_TEXT_TOKENIZER_H_
#define RLVR_POLICY_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace rlvr::policy {

// One entry of tokenizer.json's `added_tokens`.
struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class Tokenizer {
 public:
  // Loads a tokenizer.json file. Errors: NotFound (no such file), InvalidArgument (bad JSON or a
  // missing/ill-typed key, the message names the file and the key), Unimplemented (a component
  // this implementation does not support, named by its key).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // Same as FromFile for the file's contents; `source` names it in error messages.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      std::string_view json_text, std::string_view source = "tokenizer.json");
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Encodes `text` (any bytes; see the file comment for invalid UTF-8). With
  // `add_special_tokens`, the post-processor's template is applied (e.g. Llama-3's BOS).
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = false) const;

  // Decodes `ids` to valid UTF-8. Ids that are neither in the vocabulary nor added tokens are
  // skipped, as `tokenizers` does. With `skip_special_tokens`, added tokens marked special are
  // dropped.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The raw bytes that token `id` stands for (possibly an incomplete UTF-8 sequence), for
  // incremental decoding and stop-string matching. Empty for unknown ids.
  std::string_view TokenBytes(int32_t id) const;

  // The token string as written in tokenizer.json (byte-level alphabet), or empty if unknown.
  std::string_view IdToToken(int32_t id) const;
  // The id of a vocabulary or added token given as written in tokenizer.json.
  std::optional<int32_t> TokenToId(std::string_view token) const;

  // One more than the largest id (vocabulary and added tokens).
  int32_t vocab_size() const;
  // True if `id` is an added token marked special.
  bool IsSpecial(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  // Words currently held by the BPE cache (for tests and benchmarks).
  size_t cache_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_TEXT_TOKENIZER_H_
