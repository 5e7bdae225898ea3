#include "policy/text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "nlohmann/json.hpp"
#include "policy/text/unicode.h"

namespace rlvr::policy {
namespace {

using Json = nlohmann::json;

// Debian's Abseil predates absl::string_view being std::string_view; StrCat and the hash maps'
// heterogeneous lookup take absl::string_view.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// GPT-2's pre-tokenizer pattern, used by ByteLevel when `use_regex` is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Words longer than this are not cached (as in `tokenizers`).
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kCacheCapacity = 1 << 16;

// GPT-2's reversible byte <-> printable character table: printable Latin-1 bytes map to
// themselves, the others to U+0100 and up, in byte order.
struct ByteLevelTable {
  std::array<char32_t, 256> byte_to_char;
  absl::flat_hash_map<char32_t, uint8_t> char_to_byte;
  ByteLevelTable() {
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      byte_to_char[b] = printable[b] ? static_cast<char32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTable& ByteLevel() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

// Maps a byte-level token string to the bytes it stands for; nullopt if a character is outside
// the byte-level alphabet or the string is not valid UTF-8.
std::optional<std::string> ByteLevelToBytes(std::string_view token) {
  if (!IsValidUtf8(token)) return std::nullopt;
  const ByteLevelTable& table = ByteLevel();
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    size_t len;
    const char32_t cp = DecodeUtf8At(token, pos, &len);
    auto it = table.char_to_byte.find(cp);
    if (it == table.char_to_byte.end()) return std::nullopt;
    out.push_back(static_cast<char>(it->second));
    pos += len;
  }
  return out;
}

// A compiled PCRE2 pattern. Matching is thread-safe (match data is per call).
class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern, bool literal,
                                                        std::string_view key) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    const std::string translated(pattern);
    uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), options,
                      &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error_code, message.data(), message.size());
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(key), ": bad regex at offset ", error_offset, ": ",
                       reinterpret_cast<const char*>(message.data())));
    }
    auto regex = std::unique_ptr<Regex>(new Regex(code));
    regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return regex;
  }
  ~Regex() { pcre2_code_free(code_); }

  // Appends the [start, end) byte ranges of the non-empty, non-overlapping matches in `text`
  // (valid UTF-8), scanning left to right as Oniguruma's find_iter does.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t start = 0;
    while (start < text.size()) {
      int rc;
      if (jit_) {
        rc = pcre2_jit_match(code_, subject, text.size(), start, 0, md, nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
          rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                           md, nullptr);
        }
      } else {
        rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
      }
      // No match, or a resource limit on pathological input: the rest is one unmatched piece.
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t s = ov[0], e = ov[1];
      if (e == s) {
        size_t len;
        DecodeUtf8At(text, s, &len);
        start = s + len;
        continue;
      }
      out->emplace_back(s, e);
      start = e;
    }
    pcre2_match_data_free(md);
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
  bool jit_ = false;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel } kind;
  std::unique_ptr<Regex> regex;  // Split's pattern, or ByteLevel's GPT-2 regex (may be null)
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;
};

struct Merge {
  int32_t rank;
  int32_t new_id;
};

// Reads a JSON file's typed fields with errors that name the key.
class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}

  absl::Status Error(std::string_view key, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", Sv(key), ": ", Sv(message)));
  }
  absl::Status Unsupported(std::string_view key, std::string_view message) const {
    return absl::UnimplementedError(absl::StrCat(source_, ": ", Sv(key), ": ", Sv(message)));
  }
  absl::StatusOr<const Json*> Get(const Json& obj, std::string_view parent,
                                  std::string_view name) const {
    const std::string key =
        parent.empty() ? std::string(name) : absl::StrCat(Sv(parent), ".", Sv(name));
    if (!obj.is_object()) return Error(parent, "expected an object");
    auto it = obj.find(std::string(name));
    if (it == obj.end()) return Error(key, "missing");
    return &*it;
  }
  absl::StatusOr<std::string> GetString(const Json& obj, std::string_view parent,
                                        std::string_view name) const {
    RLVR_ASSIGN_OR_RETURN(const Json* v, Get(obj, parent, name));
    if (!v->is_string()) return Error(absl::StrCat(Sv(parent), ".", Sv(name)), "expected a string");
    return v->get<std::string>();
  }
  // A missing or null boolean is `fallback`.
  absl::StatusOr<bool> GetBool(const Json& obj, std::string_view parent, std::string_view name,
                               bool fallback) const {
    auto it = obj.find(std::string(name));
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean())
      return Error(absl::StrCat(Sv(parent), ".", Sv(name)), "expected a boolean");
    return it->get<bool>();
  }

 private:
  std::string source_;
};

// True if the field is absent, null, or an empty string.
bool IsUnset(const Json& obj, const char* name) {
  auto it = obj.find(name);
  return it == obj.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty());
}

// Matches a set of added tokens leftmost-longest (like aho-corasick's LeftmostLongest).
class AddedTokenMatcher {
 public:
  void Add(std::string pattern, int32_t token_index) {
    if (pattern.empty()) return;
    const auto first = static_cast<uint8_t>(pattern[0]);
    by_first_byte_[first].push_back({std::move(pattern), token_index});
    has_first_byte_[first] = true;
    empty_ = false;
  }
  void Finish() {
    for (auto& list : by_first_byte_) {
      std::stable_sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) {
        return a.pattern.size() > b.pattern.size();
      });
    }
  }
  bool empty() const { return empty_; }

  // Finds the next match at or after `from`; returns false if none.
  bool Next(std::string_view text, size_t from, size_t* start, size_t* end,
            int32_t* token_index) const {
    for (size_t pos = from; pos < text.size(); ++pos) {
      const auto b = static_cast<uint8_t>(text[pos]);
      if (!has_first_byte_[b]) continue;
      for (const Entry& e : by_first_byte_[b]) {
        if (text.size() - pos >= e.pattern.size() &&
            std::memcmp(text.data() + pos, e.pattern.data(), e.pattern.size()) == 0) {
          *start = pos;
          *end = pos + e.pattern.size();
          *token_index = e.token_index;
          return true;
        }
      }
    }
    return false;
  }

 private:
  struct Entry {
    std::string pattern;
    int32_t token_index;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;
  std::array<bool, 256> has_first_byte_{};
  bool empty_ = true;
};

// Unicode \w as regex-syntax defines it, approximated by PCRE2's UCP \w (letters, numbers,
// underscore) plus combining marks.
bool IsWordChar(char32_t cp) {
  static const Regex* word = [] {
    auto r = Regex::Compile(R"([\w\p{M}\x{200C}\x{200D}])", false, "word");
    return r.ok() ? r->release() : nullptr;
  }();
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  }
  std::string s;
  AppendUtf8(cp, &s);
  std::vector<std::pair<size_t, size_t>> m;
  word->FindAll(s, &m);
  return !m.empty();
}

char32_t LastChar(std::string_view s) {
  size_t pos = s.size() - 1;
  while (pos > 0 && (static_cast<uint8_t>(s[pos]) & 0xC0) == 0x80) --pos;
  size_t len;
  return DecodeUtf8At(s, pos, &len);
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  // Model.
  absl::flat_hash_map<std::string, int32_t> bytes_to_id;  // vocab keyed by raw bytes
  std::array<int32_t, 256> byte_id{};                     // single-byte tokens, -1 if absent
  absl::flat_hash_map<uint64_t, Merge> merges;
  bool ignore_merges = false;
  // Id tables (vocabulary and added tokens).
  std::vector<std::string> id_token;
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_known;
  std::vector<uint8_t> id_special;
  absl::flat_hash_map<std::string, int32_t> token_to_id;
  // Added tokens.
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher;         // normalized == false, matched on the raw text
  AddedTokenMatcher normalized_matcher;  // normalized == true, matched after normalization
  // Pipeline.
  std::vector<NormalizationForm> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizer;
  bool byte_level_decoder = true;
  bool has_template = false;
  std::vector<std::vector<int32_t>> template_single;  // empty inner vector = the sequence
  // Cache of BPE results per word, sharded so that threads rarely wait on each other (a plain
  // std::mutex per shard costs less here than a reader-writer lock).
  struct CacheShard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> words;
  };
  static constexpr size_t kCacheShards = 16;
  mutable std::array<CacheShard, kCacheShards> cache;

  absl::Status Load(const Json& root);
  absl::Status LoadModel(const JsonReader& r, const Json& model);
  absl::Status LoadAddedTokens(const JsonReader& r, const Json& root);
  absl::Status LoadNormalizer(const JsonReader& r, const Json& n, const std::string& key);
  absl::Status LoadPreTokenizer(const JsonReader& r, const Json& p, const std::string& key,
                                bool last);
  absl::Status LoadPostProcessor(const JsonReader& r, const Json& p, const std::string& key);
  void SetId(int32_t id, const std::string& token, std::string bytes);

  void SplitAdded(std::string_view text, const AddedTokenMatcher& matcher,
                  std::vector<std::pair<std::string_view, int32_t>>* out) const;
  void EncodeSegment(std::string_view segment, std::vector<int32_t>* ids) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
  void MergeWord(std::string_view word, std::vector<int32_t>* ids) const;
};

void Tokenizer::Impl::SetId(int32_t id, const std::string& token, std::string bytes) {
  if (static_cast<size_t>(id) >= id_token.size()) {
    id_token.resize(id + 1);
    id_bytes.resize(id + 1);
    id_known.resize(id + 1, 0);
    id_special.resize(id + 1, 0);
  }
  id_token[id] = token;
  id_bytes[id] = std::move(bytes);
  id_known[id] = 1;
}

absl::Status Tokenizer::Impl::LoadModel(const JsonReader& r, const Json& model) {
  RLVR_ASSIGN_OR_RETURN(std::string type, r.GetString(model, "model", "type"));
  if (type != "BPE") {
    return r.Unsupported("model.type", absl::StrCat("'", type, "' is not supported (only BPE)"));
  }
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    return r.Unsupported("model.dropout", "BPE dropout is not supported");
  }
  for (const char* key : {"unk_token", "continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!IsUnset(model, key)) {
      return r.Unsupported(absl::StrCat("model.", key), "must be null or empty");
    }
  }
  RLVR_ASSIGN_OR_RETURN(bool byte_fallback, r.GetBool(model, "model", "byte_fallback", false));
  if (byte_fallback) return r.Unsupported("model.byte_fallback", "must be false");
  RLVR_ASSIGN_OR_RETURN(ignore_merges, r.GetBool(model, "model", "ignore_merges", false));

  RLVR_ASSIGN_OR_RETURN(const Json* vocab, r.Get(model, "model", "vocab"));
  if (!vocab->is_object()) return r.Error("model.vocab", "expected an object of token: id");
  absl::flat_hash_map<std::string, int32_t> file_vocab;
  file_vocab.reserve(vocab->size());
  byte_id.fill(-1);
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (int64_t{1} << 30)) {
      return r.Error(absl::StrCat("model.vocab[\"", it.key(), "\"]"),
                     "expected a non-negative integer id");
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    file_vocab[it.key()] = id;
    std::optional<std::string> bytes = ByteLevelToBytes(it.key());
    if (bytes.has_value()) {
      if (bytes->size() == 1) byte_id[static_cast<uint8_t>((*bytes)[0])] = id;
      bytes_to_id[*bytes] = id;
      SetId(id, it.key(), *bytes);
    } else {
      SetId(id, it.key(), it.key());
    }
    token_to_id[it.key()] = id;
  }

  RLVR_ASSIGN_OR_RETURN(const Json* merge_list, r.Get(model, "model", "merges"));
  if (!merge_list->is_array()) return r.Error("model.merges", "expected an array");
  merges.reserve(merge_list->size());
  for (size_t i = 0; i < merge_list->size(); ++i) {
    const Json& m = (*merge_list)[i];
    const std::string key = absl::StrCat("model.merges[", i, "]");
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return r.Error(key, absl::StrCat("expected \"a b\", got \"", s, "\""));
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return r.Error(key, "expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = file_vocab.find(a), ib = file_vocab.find(b), iab = file_vocab.find(a + b);
    if (ia == file_vocab.end()) return r.Error(key, absl::StrCat("'", a, "' is not in the vocab"));
    if (ib == file_vocab.end()) return r.Error(key, absl::StrCat("'", b, "' is not in the vocab"));
    if (iab == file_vocab.end()) {
      return r.Error(key, absl::StrCat("merged token '", a, b, "' is not in the vocab"));
    }
    const uint64_t pair = (static_cast<uint64_t>(ia->second) << 32) | ib->second;
    merges[pair] = Merge{static_cast<int32_t>(i), iab->second};
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::LoadAddedTokens(const JsonReader& r, const Json& root) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return r.Error("added_tokens", "expected an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& t = (*it)[i];
    const std::string key = absl::StrCat("added_tokens[", i, "]");
    AddedToken token;
    RLVR_ASSIGN_OR_RETURN(const Json* id, r.Get(t, key, "id"));
    if (!id->is_number_integer() || id->get<int64_t>() < 0 ||
        id->get<int64_t>() > (int64_t{1} << 30)) {
      return r.Error(key + ".id", "expected a non-negative integer");
    }
    token.id = static_cast<int32_t>(id->get<int64_t>());
    RLVR_ASSIGN_OR_RETURN(token.content, r.GetString(t, key, "content"));
    if (token.content.empty()) return r.Error(key + ".content", "must not be empty");
    if (!IsValidUtf8(token.content)) return r.Error(key + ".content", "is not valid UTF-8");
    RLVR_ASSIGN_OR_RETURN(token.special, r.GetBool(t, key, "special", false));
    RLVR_ASSIGN_OR_RETURN(token.lstrip, r.GetBool(t, key, "lstrip", false));
    RLVR_ASSIGN_OR_RETURN(token.rstrip, r.GetBool(t, key, "rstrip", false));
    RLVR_ASSIGN_OR_RETURN(token.single_word, r.GetBool(t, key, "single_word", false));
    RLVR_ASSIGN_OR_RETURN(token.normalized, r.GetBool(t, key, "normalized", !token.special));
    added.push_back(std::move(token));
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::LoadNormalizer(const JsonReader& r, const Json& n,
                                             const std::string& key) {
  if (n.is_null()) return absl::OkStatus();
  RLVR_ASSIGN_OR_RETURN(std::string type, r.GetString(n, key, "type"));
  if (type == "Sequence") {
    RLVR_ASSIGN_OR_RETURN(const Json* list, r.Get(n, key, "normalizers"));
    if (!list->is_array()) return r.Error(key + ".normalizers", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      RLVR_RETURN_IF_ERROR(
          LoadNormalizer(r, (*list)[i], absl::StrCat(key, ".normalizers[", i, "]")));
    }
    return absl::OkStatus();
  }
  if (type == "NFC") {
    normalizers.push_back(NormalizationForm::kNfc);
  } else if (type == "NFD") {
    normalizers.push_back(NormalizationForm::kNfd);
  } else if (type == "NFKC") {
    normalizers.push_back(NormalizationForm::kNfkc);
  } else if (type == "NFKD") {
    normalizers.push_back(NormalizationForm::kNfkd);
  } else {
    return r.Unsupported(key + ".type", absl::StrCat("'", type, "' is not supported"));
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::LoadPreTokenizer(const JsonReader& r, const Json& p,
                                               const std::string& key, bool last) {
  RLVR_ASSIGN_OR_RETURN(std::string type, r.GetString(p, key, "type"));
  if (type == "Sequence") {
    RLVR_ASSIGN_OR_RETURN(const Json* list, r.Get(p, key, "pretokenizers"));
    if (!list->is_array() || list->empty()) {
      return r.Error(key + ".pretokenizers", "expected a non-empty array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RLVR_RETURN_IF_ERROR(LoadPreTokenizer(r, (*list)[i],
                                            absl::StrCat(key, ".pretokenizers[", i, "]"),
                                            last && i + 1 == list->size()));
    }
    return absl::OkStatus();
  }
  PreTokenizerStep step;
  if (type == "ByteLevel") {
    if (!last) {
      return r.Unsupported(key, "ByteLevel must be the last pre-tokenizer");
    }
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    RLVR_ASSIGN_OR_RETURN(step.add_prefix_space, r.GetBool(p, key, "add_prefix_space", true));
    RLVR_ASSIGN_OR_RETURN(bool use_regex, r.GetBool(p, key, "use_regex", true));
    if (use_regex) {
      RLVR_ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern, false, key));
    }
  } else if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    RLVR_ASSIGN_OR_RETURN(const Json* pattern, r.Get(p, key, "pattern"));
    const std::string pkey = key + ".pattern";
    if (pattern->is_object() && pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
      RLVR_ASSIGN_OR_RETURN(step.regex, Regex::Compile((*pattern)["Regex"].get<std::string>(),
                                                       false, pkey + ".Regex"));
    } else if (pattern->is_object() && pattern->contains("String") &&
               (*pattern)["String"].is_string()) {
      RLVR_ASSIGN_OR_RETURN(step.regex, Regex::Compile((*pattern)["String"].get<std::string>(),
                                                       true, pkey + ".String"));
    } else {
      return r.Error(pkey, "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    RLVR_ASSIGN_OR_RETURN(std::string behavior, r.GetString(p, key, "behavior"));
    if (behavior == "Removed") {
      step.behavior = SplitBehavior::kRemoved;
    } else if (behavior == "Isolated") {
      step.behavior = SplitBehavior::kIsolated;
    } else if (behavior == "MergedWithPrevious") {
      step.behavior = SplitBehavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      step.behavior = SplitBehavior::kMergedWithNext;
    } else if (behavior == "Contiguous") {
      step.behavior = SplitBehavior::kContiguous;
    } else {
      return r.Error(key + ".behavior", absl::StrCat("unknown behavior '", behavior, "'"));
    }
    RLVR_ASSIGN_OR_RETURN(step.invert, r.GetBool(p, key, "invert", false));
    if (last) return r.Unsupported(key, "the last pre-tokenizer must be ByteLevel");
  } else {
    return r.Unsupported(key + ".type", absl::StrCat("'", type, "' is not supported"));
  }
  pre_tokenizer.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::LoadPostProcessor(const JsonReader& r, const Json& p,
                                                const std::string& key) {
  if (p.is_null()) return absl::OkStatus();
  RLVR_ASSIGN_OR_RETURN(std::string type, r.GetString(p, key, "type"));
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    RLVR_ASSIGN_OR_RETURN(const Json* list, r.Get(p, key, "processors"));
    if (!list->is_array()) return r.Error(key + ".processors", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      RLVR_RETURN_IF_ERROR(
          LoadPostProcessor(r, (*list)[i], absl::StrCat(key, ".processors[", i, "]")));
    }
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return r.Unsupported(key + ".type", absl::StrCat("'", type, "' is not supported"));
  }
  if (has_template) return r.Unsupported(key, "only one TemplateProcessing is supported");
  has_template = true;
  RLVR_ASSIGN_OR_RETURN(const Json* single, r.Get(p, key, "single"));
  RLVR_ASSIGN_OR_RETURN(const Json* specials, r.Get(p, key, "special_tokens"));
  if (!single->is_array()) return r.Error(key + ".single", "expected an array");
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& piece = (*single)[i];
    const std::string pkey = absl::StrCat(key, ".single[", i, "]");
    if (piece.contains("Sequence")) {
      template_single.emplace_back();
    } else if (piece.contains("SpecialToken") && piece["SpecialToken"].contains("id") &&
               piece["SpecialToken"]["id"].is_string()) {
      const std::string name = piece["SpecialToken"]["id"].get<std::string>();
      auto st = specials->find(name);
      if (st == specials->end() || !st->contains("ids") || !(*st)["ids"].is_array()) {
        return r.Error(absl::StrCat(key, ".special_tokens"),
                       absl::StrCat("no ids for '", name, "'"));
      }
      std::vector<int32_t> ids;
      for (const Json& id : (*st)["ids"]) {
        if (!id.is_number_integer()) {
          return r.Error(absl::StrCat(key, ".special_tokens.", name), "ids must be integers");
        }
        ids.push_back(id.get<int32_t>());
      }
      if (ids.empty()) continue;
      template_single.push_back(std::move(ids));
    } else {
      return r.Error(pkey, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::Load(const Json& root) {
  JsonReader r(source);
  if (!root.is_object()) return r.Error("(root)", "expected a JSON object");
  RLVR_ASSIGN_OR_RETURN(const Json* model, r.Get(root, "", "model"));
  RLVR_RETURN_IF_ERROR(LoadModel(r, *model));
  RLVR_RETURN_IF_ERROR(LoadAddedTokens(r, root));
  if (auto it = root.find("normalizer"); it != root.end()) {
    RLVR_RETURN_IF_ERROR(LoadNormalizer(r, *it, "normalizer"));
  }
  RLVR_ASSIGN_OR_RETURN(const Json* pre, r.Get(root, "", "pre_tokenizer"));
  if (pre->is_null()) {
    return r.Unsupported("pre_tokenizer", "null is not supported (byte-level BPE needs ByteLevel)");
  }
  RLVR_RETURN_IF_ERROR(LoadPreTokenizer(r, *pre, "pre_tokenizer", true));
  if (auto it = root.find("post_processor"); it != root.end()) {
    RLVR_RETURN_IF_ERROR(LoadPostProcessor(r, *it, "post_processor"));
  }
  if (auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
    RLVR_ASSIGN_OR_RETURN(std::string type, r.GetString(*it, "decoder", "type"));
    if (type != "ByteLevel") {
      return r.Unsupported("decoder.type", absl::StrCat("'", type, "' is not supported"));
    }
  } else {
    byte_level_decoder = false;
  }

  // Added tokens take their ids over the vocabulary's.
  std::vector<std::string> special_contents;
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& t = added[i];
    std::string bytes = t.content;
    if (byte_level_decoder) {
      if (std::optional<std::string> b = ByteLevelToBytes(t.content)) bytes = *std::move(b);
    }
    SetId(t.id, t.content, std::move(bytes));
    token_to_id[t.content] = t.id;
    if (t.special) special_contents.push_back(t.content);
    if (t.normalized && !normalizers.empty()) {
      std::string pattern = t.content;
      for (NormalizationForm form : normalizers) {
        RLVR_ASSIGN_OR_RETURN(pattern, Normalize(pattern, form));
      }
      normalized_matcher.Add(std::move(pattern), static_cast<int32_t>(i));
    } else if (t.normalized) {
      normalized_matcher.Add(t.content, static_cast<int32_t>(i));
    } else {
      raw_matcher.Add(t.content, static_cast<int32_t>(i));
    }
  }
  raw_matcher.Finish();
  normalized_matcher.Finish();
  // `tokenizers` skips by token string, so a vocabulary entry equal to a special token's
  // content is skipped too.
  for (size_t id = 0; id < id_token.size(); ++id) {
    if (!id_known[id]) continue;
    for (const std::string& s : special_contents) {
      if (id_token[id] == s) id_special[id] = 1;
    }
  }
  for (const auto& ids : template_single) {
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= id_known.size() || !id_known[id]) {
        return r.Error("post_processor", absl::StrCat("special token id ", id, " is unknown"));
      }
    }
  }
  return absl::OkStatus();
}

// Splits `text` on the matcher's added tokens, honouring lstrip/rstrip/single_word exactly as
// AddedVocabulary::find_matches does. Each output piece is (text, added token id or -1).
void Tokenizer::Impl::SplitAdded(std::string_view text, const AddedTokenMatcher& matcher,
                                 std::vector<std::pair<std::string_view, int32_t>>* out) const {
  if (matcher.empty()) {
    if (!text.empty()) out->emplace_back(text, -1);
    return;
  }
  size_t start_offset = 0;
  size_t search = 0;
  size_t mstart, mend;
  int32_t index;
  while (matcher.Next(text, search, &mstart, &mend, &index)) {
    search = mend;
    const AddedToken& t = added[index];
    size_t start = mstart, stop = mend;
    if (t.single_word) {
      const bool start_space = start == 0 || !IsWordChar(LastChar(text.substr(0, start)));
      size_t len = 0;
      const bool stop_space = stop == text.size() || !IsWordChar(DecodeUtf8At(text, stop, &len));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        size_t p = new_start - 1;
        while (p > 0 && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
        size_t len;
        if (!IsUnicodeWhitespace(DecodeUtf8At(text, p, &len))) break;
        new_start = p;
      }
      start = std::max(new_start, start_offset);
    }
    if (t.rstrip) {
      while (stop < text.size()) {
        size_t len;
        if (!IsUnicodeWhitespace(DecodeUtf8At(text, stop, &len))) break;
        stop += len;
      }
    }
    if (start_offset < start)
      out->emplace_back(text.substr(start_offset, start - start_offset), -1);
    out->emplace_back(text.substr(start, stop - start), t.id);
    start_offset = stop;
  }
  if (start_offset < text.size()) out->emplace_back(text.substr(start_offset), -1);
}

void Tokenizer::Impl::MergeWord(std::string_view word, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    int32_t len;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // Lowest rank first, then leftmost: the order of `tokenizers`' BinaryHeap.
  const auto worse = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (char c : word) {
    const int32_t id = byte_id[static_cast<uint8_t>(c)];
    if (id < 0) continue;  // not in the vocabulary and no unk token: dropped, as upstream
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, 1});
  }
  const auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = lookup(symbols[i].id, symbols[i + 1].id)) {
      heap.push_back({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), worse);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    const Merge* m = lookup(cur.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // a stale entry
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0 && static_cast<size_t>(right.next) < symbols.size()) {
      symbols[right.next].prev = top.pos;
    }
    if (cur.prev >= 0) {
      if (const Merge* pm = lookup(symbols[cur.prev].id, cur.id)) {
        heap.push_back({pm->rank, cur.prev, pm->new_id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
    if (cur.next >= 0 && static_cast<size_t>(cur.next) < symbols.size()) {
      if (const Merge* nm = lookup(cur.id, symbols[cur.next].id)) {
        heap.push_back({nm->rank, top.pos, nm->new_id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) ids->push_back(s.id);
  }
}

void Tokenizer::Impl::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.size() == 1) {
    const int32_t id = byte_id[static_cast<uint8_t>(word[0])];
    if (id >= 0) ids->push_back(id);
    return;
  }
  if (ignore_merges) {
    auto it = bytes_to_id.find(Sv(word));
    if (it != bytes_to_id.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  CacheShard& shard = cache[std::hash<std::string_view>()(word) % kCacheShards];
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.words.find(Sv(word));
    if (it != shard.words.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t before = ids->size();
  MergeWord(word, ids);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard.mu);
    if (shard.words.size() < kCacheCapacity / kCacheShards) {
      shard.words.emplace(std::string(word),
                          std::vector<int32_t>(ids->begin() + before, ids->end()));
    }
  }
}

void Tokenizer::Impl::EncodeSegment(std::string_view segment, std::vector<int32_t>* ids) const {
  thread_local std::vector<std::string_view> pieces, next;
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  thread_local std::vector<std::pair<size_t, size_t>> out;
  std::vector<std::unique_ptr<std::string>> arena;  // pieces with a prefix space added
  pieces.clear();
  pieces.push_back(segment);
  for (const PreTokenizerStep& step : pre_tokenizer) {
    next.clear();
    for (std::string_view piece : pieces) {
      if (step.kind == PreTokenizerStep::Kind::kByteLevel && step.add_prefix_space &&
          (piece.empty() || piece[0] != ' ')) {
        arena.push_back(std::make_unique<std::string>(absl::StrCat(" ", Sv(piece))));
        piece = *arena.back();
      }
      if (step.regex == nullptr) {
        if (!piece.empty()) next.push_back(piece);
        continue;
      }
      matches.clear();
      step.regex->FindAll(piece, &matches);
      const bool invert = step.kind == PreTokenizerStep::Kind::kSplit && step.invert;
      const SplitBehavior behavior =
          step.kind == PreTokenizerStep::Kind::kSplit ? step.behavior : SplitBehavior::kIsolated;
      if (behavior == SplitBehavior::kIsolated) {
        // The common case (every known byte-level tokenizer): matches and gaps, in order.
        size_t prev = 0;
        for (const auto& [s, e] : matches) {
          if (prev != s) next.push_back(piece.substr(prev, s - prev));
          next.push_back(piece.substr(s, e - s));
          prev = e;
        }
        if (prev != piece.size()) next.push_back(piece.substr(prev));
        continue;
      }
      // (range, is_match) over the whole piece, then the behavior's grouping.
      struct Span {
        size_t start, end;
        bool match;
      };
      std::vector<Span> spans;
      size_t prev = 0;
      for (const auto& [s, e] : matches) {
        if (prev != s) spans.push_back({prev, s, false});
        spans.push_back({s, e, true});
        prev = e;
      }
      if (prev != piece.size()) spans.push_back({prev, piece.size(), false});
      if (invert) {
        for (Span& sp : spans) sp.match = !sp.match;
      }
      out.clear();
      switch (behavior) {
        case SplitBehavior::kIsolated:  // handled above
          break;
        case SplitBehavior::kRemoved:
          for (const Span& sp : spans) {
            if (!sp.match) out.emplace_back(sp.start, sp.end);
          }
          break;
        case SplitBehavior::kContiguous: {
          bool previous_match = false;
          for (const Span& sp : spans) {
            if (sp.match == previous_match && !out.empty()) {
              out.back().second = sp.end;
            } else {
              out.emplace_back(sp.start, sp.end);
            }
            previous_match = sp.match;
          }
          break;
        }
        case SplitBehavior::kMergedWithPrevious: {
          bool previous_match = false;
          for (const Span& sp : spans) {
            if (sp.match && !previous_match && !out.empty()) {
              out.back().second = sp.end;
            } else {
              out.emplace_back(sp.start, sp.end);
            }
            previous_match = sp.match;
          }
          break;
        }
        case SplitBehavior::kMergedWithNext: {
          bool previous_match = false;
          for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
            if (it->match && !previous_match && !out.empty()) {
              out.back().first = it->start;
            } else {
              out.emplace_back(it->start, it->end);
            }
            previous_match = it->match;
          }
          std::reverse(out.begin(), out.end());
          break;
        }
      }
      for (const auto& [s, e] : out) {
        if (e > s) next.push_back(piece.substr(s, e - s));
      }
    }
    std::swap(pieces, next);
  }
  for (std::string_view piece : pieces) EncodeWord(piece, ids);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return FromJson(buffer.str(), path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text,
                                                               std::string_view source) {
  Json root = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    // Parse again with exceptions only to recover the position for the message.
    std::string detail = "invalid JSON";
    try {
      root = Json::parse(json_text);
    } catch (const Json::parse_error& e) {
      detail = absl::StrCat("invalid JSON at byte ", e.byte, ": ", e.what());
    }
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": ", detail));
  }
  auto impl = std::make_unique<Impl>();
  impl->source = std::string(source);
  try {
    RLVR_RETURN_IF_ERROR(impl->Load(root));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": ", e.what()));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = ToValidUtf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<std::pair<std::string_view, int32_t>> raw_pieces, norm_pieces;
  m.SplitAdded(text, m.raw_matcher, &raw_pieces);
  std::string normalized;
  for (const auto& [piece, id] : raw_pieces) {
    if (id >= 0) {
      ids.push_back(id);
      continue;
    }
    std::string_view view = piece;
    const bool ascii = std::all_of(piece.begin(), piece.end(),
                                   [](char c) { return static_cast<uint8_t>(c) < 0x80; });
    // Every supported normalization form leaves ASCII unchanged.
    if (!m.normalizers.empty() && !ascii) {
      normalized = std::string(piece);
      for (NormalizationForm form : m.normalizers) {
        absl::StatusOr<std::string> n = Normalize(normalized, form);
        RLVR_CHECK(n.ok(), n.status().ToString());
        normalized = *std::move(n);
      }
      view = normalized;
    }
    norm_pieces.clear();
    m.SplitAdded(view, m.normalized_matcher, &norm_pieces);
    for (const auto& [sub, sub_id] : norm_pieces) {
      if (sub_id >= 0) {
        ids.push_back(sub_id);
      } else {
        m.EncodeSegment(sub, &ids);
      }
    }
  }
  if (add_special_tokens && m.has_template) {
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& piece : m.template_single) {
      if (piece.empty()) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), piece.begin(), piece.end());
      }
    }
    return out;
  }
  return ids;
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= m.id_known.size() || !m.id_known[id]) continue;
    if (skip_special_tokens && m.id_special[id]) continue;
    if (m.byte_level_decoder) {
      bytes += m.id_bytes[id];
    } else {
      if (!first) bytes += ' ';
      bytes += m.id_token[id];
    }
    first = false;
  }
  if (IsValidUtf8(bytes)) return bytes;
  return ToValidUtf8(bytes);
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || static_cast<size_t>(id) >= m.id_known.size() || !m.id_known[id]) return {};
  return m.id_bytes[id];
}

std::string_view Tokenizer::IdToToken(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || static_cast<size_t>(id) >= m.id_known.size() || !m.id_known[id]) return {};
  return m.id_token[id];
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->token_to_id.find(Sv(token));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_known.size()); }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[id];
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

size_t Tokenizer::cache_size() const {
  size_t n = 0;
  for (auto& shard : impl_->cache) {
    std::lock_guard<std::mutex> lock(shard.mu);
    n += shard.words.size();
  }
  return n;
}

}  // namespace rlvr::policy
