#include "verifiers/math/extract.h"

#include <cstdint>
#include <cstring>
#include <string_view>

namespace rlvr::verifiers::math {
namespace {

constexpr size_t kNpos = std::string_view::npos;
// Longest answer taken after a phrase or "####".
constexpr size_t kMaxPhraseAnswer = 512;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view StripSpace(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool EndsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// Position just past the brace that closes the '{' at `open`, or npos.
size_t MatchBrace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '{') ++depth;
    if (c == '}' && --depth == 0) return i + 1;
  }
  return kNpos;
}

// The content of the last \boxed / \fbox in `s`; sets *found.
// True if `gap`, the text between two boxes, only joins answers: spaces, '$',
// ',', ';', "and", "or", \text{ and }, \quad, and a "x =" before the next box.
bool JoinsBoxes(std::string_view gap) {
  std::string_view rest = gap;
  char kept_buf[16];
  size_t kept_len = 0;
  for (size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    if (IsSpace(c) || c == '$' || c == ',' || c == ';' || c == '~' || c == '{' || c == '}') {
      continue;
    }
    if (c == '\\') {
      size_t j = i + 1;
      while (j < rest.size() &&
             ((rest[j] >= 'a' && rest[j] <= 'z') || (rest[j] >= 'A' && rest[j] <= 'Z'))) {
        ++j;
      }
      std::string_view name = rest.substr(i + 1, j - i - 1);
      if (name != "text" && name != "quad" && name != "qquad" && name != "textrm" &&
          !name.empty()) {
        return false;
      }
      i = (name.empty() ? i + 1 : j - 1);
      continue;
    }
    if (kept_len >= sizeof(kept_buf)) return false;
    kept_buf[kept_len++] = Lower(c);
  }
  std::string_view k(kept_buf, kept_len);
  if (k.substr(0, 3) == "and")
    k.remove_prefix(3);
  else if (k.substr(0, 2) == "or")
    k.remove_prefix(2);
  if (k.size() == 2 && k[1] == '=' && ((k[0] >= 'a' && k[0] <= 'z'))) k = {};
  return k.empty();
}

// Position of the last "\boxed" or "\fbox" starting before `end`, and its name
// length.
bool FindBoxBefore(std::string_view s, size_t end, size_t *at, size_t *len) {
  std::string_view head = s.substr(0, end);
  size_t a = head.rfind("\\boxed");
  size_t b = head.rfind("\\fbox");
  if (a != kNpos && (b == kNpos || a > b)) {
    *at = a;
    *len = 6;
    return true;
  }
  if (b != kNpos) {
    *at = b;
    *len = 5;
    return true;
  }
  return false;
}

// The content of the last \boxed / \fbox in `s`; sets *found. Boxes joined only
// by separators
// ("\boxed{2}, \boxed{3}", "$x=\boxed{2}$ or $x=\boxed{3}$") are taken
// together, as the span from the first "\boxed" to the last closing brace,
// which the parser reads as a list.
std::string_view LastBoxed(std::string_view s, bool *found) {
  *found = false;
  size_t at, len;
  if (!FindBoxBefore(s, s.size(), &at, &len)) return {};
  *found = true;
  size_t p = at + len;
  while (p < s.size() && s[p] == ' ') ++p;
  if (p < s.size() && s[p] == '{') {
    size_t close = MatchBrace(s, p);
    if (close == kNpos) return s.substr(p);  // unbalanced: keep the '{' so parsing fails
    size_t first = at;
    for (int boxes = 1; boxes < 16; ++boxes) {
      size_t prev, prev_len;
      if (!FindBoxBefore(s, first, &prev, &prev_len)) break;
      size_t q = prev + prev_len;
      while (q < first && s[q] == ' ') ++q;
      if (q >= first || s[q] != '{') break;
      size_t prev_close = MatchBrace(s, q);
      if (prev_close == kNpos || prev_close > first) break;
      if (!JoinsBoxes(s.substr(prev_close, first - prev_close))) break;
      first = prev;
    }
    if (first != at) return s.substr(first, close - first);
    return s.substr(p + 1, close - p - 2);
  }
  // "\boxed 5": up to the next space or '$'.
  size_t e = p;
  while (e < s.size() && !IsSpace(s[e]) && s[e] != '$') ++e;
  return s.substr(p, e - p);
}

struct Phrase {
  std::string_view text;  // lower case; ASCII letters match case-insensitively
};

// Answer phrases in the languages of common math data sets.
constexpr Phrase kPhrases[] = {
    {"final answer is"},
    {"final answer:"},
    {"answer is"},
    {"answer:"},
    {"answer :"},
    {"答案是"},
    {"答案为"},
    {"答案："},
    {"答案:"},
    {"答え："},
    {"答えは"},
    {"정답은"},
    {"답은"},
    {"réponse est"},
    {"réponse :"},
    {"réponse:"},
    {"respuesta es"},
    {"respuesta:"},
    {"resposta é"},
    {"resposta:"},
    {"antwort ist"},
    {"antwort lautet"},
    {"antwort:"},
    {"risposta è"},
    {"risposta:"},
    {"ответ:"},
    {"Ответ:"},
    {"ответ равен"},
    {"Ответ равен"},
    {"ответ —"},
    {"jawabannya adalah"},
    {"jawaban:"},
    {"cevap:"},
};

bool MatchesAt(std::string_view s, size_t i, std::string_view phrase) {
  if (i + phrase.size() > s.size()) return false;
  for (size_t k = 0; k < phrase.size(); ++k) {
    if (Lower(s[i + k]) != phrase[k]) return false;
  }
  return true;
}

// Finds the last answer phrase; returns the text after it.
bool LastPhrase(std::string_view s, std::string_view *after) {
  // Phrases indexed by their first byte, so most positions cost one table
  // lookup.
  struct Index {
    uint8_t count[256] = {};
    uint8_t ids[256][8] = {};
  };
  static const Index kIndex = [] {
    Index x;
    for (size_t k = 0; k < sizeof(kPhrases) / sizeof(kPhrases[0]); ++k) {
      auto b = static_cast<unsigned char>(kPhrases[k].text[0]);
      if (x.count[b] < 8) x.ids[b][x.count[b]++] = static_cast<uint8_t>(k);
    }
    return x;
  }();
  for (size_t i = s.size(); i-- > 0;) {
    auto b = static_cast<unsigned char>(Lower(s[i]));
    for (uint8_t k = 0; k < kIndex.count[b]; ++k) {
      const Phrase &p = kPhrases[kIndex.ids[b][k]];
      if (MatchesAt(s, i, p.text)) {
        *after = s.substr(i + p.text.size());
        return true;
      }
    }
  }
  return false;
}

// The answer that follows an answer phrase: a $...$ span, or the rest of the
// sentence.
std::string_view AnswerAfterPhrase(std::string_view rest) {
  size_t i = 0;
  while (i < rest.size() && (IsSpace(rest[i]) || rest[i] == ':' || rest[i] == '*')) ++i;
  rest = rest.substr(i);
  if (StartsWith(rest, "is ") || StartsWith(rest, "= ")) rest = StripSpace(rest.substr(2));
  if (rest.size() > kMaxPhraseAnswer) rest = rest.substr(0, kMaxPhraseAnswer);
  bool found = false;
  std::string_view boxed = LastBoxed(rest, &found);
  if (found) return boxed;
  if (StartsWith(rest, "$$")) {
    size_t e = rest.find("$$", 2);
    return e == kNpos ? rest.substr(2) : rest.substr(2, e - 2);
  }
  if (StartsWith(rest, "$")) {
    // The closing '$' (a "\\$" inside is a dollar sign).
    size_t e = 1;
    while (e < rest.size() && !(rest[e] == '$' && rest[e - 1] != '\\')) ++e;
    return e >= rest.size() ? rest.substr(1) : rest.substr(1, e - 1);
  }
  if (StartsWith(rest, "\\(") || StartsWith(rest, "\\[")) {
    size_t e = rest.find(rest[1] == '(' ? "\\)" : "\\]", 2);
    return e == kNpos ? rest.substr(2) : rest.substr(2, e - 2);
  }
  size_t nl = rest.find('\n');
  if (nl != kNpos) rest = rest.substr(0, nl);
  // End of the sentence: ". " or "。".
  for (size_t k = 0; k + 1 < rest.size(); ++k) {
    if (rest[k] == '.' && rest[k + 1] == ' ' &&
        !(k > 0 && IsDigit(rest[k - 1]) && k + 2 < rest.size() && IsDigit(rest[k + 2]))) {
      rest = rest.substr(0, k);
      break;
    }
  }
  size_t stop = rest.find("\xE3\x80\x82");
  if (stop != kNpos) rest = rest.substr(0, stop);
  return rest;
}

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Function names that do not count as prose words.
bool IsMathWord(std::string_view w) {
  static constexpr std::string_view kMath[] = {"sin",    "cos",    "tan",    "cot",  "sec",  "csc",
                                               "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
                                               "log",    "exp",    "sqrt",   "inf",  "infty"};
  for (std::string_view m : kMath) {
    if (m == w) return true;
  }
  return false;
}

// A short single-line completion that is only an answer: math without prose
// words ("x = 5",
// "\frac{1}{2}", "15 cm^2"), or a plain-text answer of one or two words
// ("Evelyn", "odd").
bool LooksLikeBareAnswer(std::string_view s, const ExtractOptions &options) {
  if (s.empty() || static_cast<int64_t>(s.size()) > options.max_whole_answer_bytes) return false;
  if (s.find('\n') != kNpos) return false;
  int long_words = 0;
  int words = 0;
  bool other = false;  // digits or math symbols
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\\') {
      ++i;
      size_t b = i;
      while (i < s.size() && IsLetter(s[i])) ++i;
      std::string_view name = s.substr(b, i - b);
      if (name.substr(0, 4) == "text" || name == "mbox" || name == "mathrm" || name == "begin" ||
          name == "end") {
        // \text{...}: its words are an answer or a unit, not prose.
        while (i < s.size() && s[i] == ' ') ++i;
        if (i < s.size() && s[i] == '{') {
          size_t close = MatchBrace(s, i);
          i = close == kNpos ? s.size() : close;
        }
      }
      other = true;
      continue;
    }
    if (static_cast<unsigned char>(s[i]) >= 0x80) {
      // One character is a math symbol (π, √, −); a longer run is a word in
      // another script.
      size_t j = i;
      while (j < s.size() && static_cast<unsigned char>(s[j]) >= 0x80) ++j;
      if (j - i > 3) {
        ++words;
        ++long_words;
      } else {
        other = true;
      }
      i = j;
      continue;
    }
    size_t j = i;
    while (j < s.size() && IsLetter(s[j])) ++j;
    if (j > i) {
      std::string_view w = s.substr(i, j - i);
      ++words;
      if (w.size() >= 3 && !IsMathWord(w)) ++long_words;
      i = j;
      continue;
    }
    if (s[i] != ' ' && s[i] != '.' && s[i] != '-') other = true;
    ++i;
  }
  if (long_words == 0) return true;
  return !other && words <= 2;
}

}  // namespace

std::string_view AnswerSourceName(AnswerSource source) {
  switch (source) {
    case AnswerSource::kNone:
      return "none";
    case AnswerSource::kBoxed:
      return "boxed";
    case AnswerSource::kAnswerTag:
      return "answer_tag";
    case AnswerSource::kHashes:
      return "hashes";
    case AnswerSource::kPhrase:
      return "phrase";
    case AnswerSource::kWhole:
      return "whole";
    case AnswerSource::kLastNumber:
      return "last_number";
  }
  return "unknown";
}

std::string_view TrimAnswer(std::string_view s) {
  for (int round = 0; round < 4; ++round) {
    std::string_view before = s;
    s = StripSpace(s);
    while (!s.empty() &&
           (s.back() == '.' || s.back() == ',' || s.back() == ';' || s.back() == ':')) {
      // Keep a trailing "\," or "\;" intact (spacing commands), drop sentence
      // punctuation.
      if (s.size() >= 2 && s[s.size() - 2] == '\\') break;
      s.remove_suffix(1);
    }
    s = StripSpace(s);
    while (!s.empty() && s.front() == '*') s.remove_prefix(1);
    while (!s.empty() && s.back() == '*') s.remove_suffix(1);
    if (s.size() >= 2 && s.front() == '$' && s.back() == '$') {
      size_t k = 0;
      while (k < s.size() / 2 && s[k] == '$' && s[s.size() - 1 - k] == '$') ++k;
      s = s.substr(k, s.size() - 2 * k);
    }
    if (s.size() >= 4 && ((StartsWith(s, "\\(") && EndsWith(s, "\\)")) ||
                          (StartsWith(s, "\\[") && EndsWith(s, "\\]")))) {
      s = s.substr(2, s.size() - 4);
    }
    if (s == before) break;
  }
  return s;
}

std::string_view LastNumber(std::string_view text) {
  size_t i = text.size();
  while (i > 0 && !IsDigit(text[i - 1])) --i;
  if (i == 0) return {};
  size_t end = i;
  size_t b = i;
  while (b > 0) {
    char c = text[b - 1];
    if (IsDigit(c)) {
      --b;
    } else if ((c == '.' || c == ',') && b >= 2 && IsDigit(text[b - 2])) {
      --b;
    } else if (c == '/' && b >= 2 && IsDigit(text[b - 2])) {
      --b;
    } else {
      break;
    }
  }
  if (b > 0 && text[b - 1] == '-') --b;
  return text.substr(b, end - b);
}

Extracted ExtractAnswer(std::string_view completion, const ExtractOptions &options) {
  Extracted out;
  std::string_view s = completion;
  if (options.max_completion_bytes > 0 &&
      static_cast<int64_t>(s.size()) > options.max_completion_bytes) {
    s = s.substr(s.size() - options.max_completion_bytes);
  }
  // An <answer> block narrows the search to its content.
  size_t tag = s.rfind("<answer>");
  if (tag != kNpos) {
    std::string_view inner = s.substr(tag + 8);
    size_t close = inner.find("</answer>");
    if (close != kNpos) inner = inner.substr(0, close);
    bool found = false;
    std::string_view boxed = LastBoxed(inner, &found);
    std::string_view after;
    if (found) {
      out.answer = TrimAnswer(boxed);
    } else if (LastPhrase(inner, &after)) {
      out.answer = TrimAnswer(AnswerAfterPhrase(after));
    } else {
      out.answer = TrimAnswer(inner);
    }
    out.source = out.answer.empty() ? AnswerSource::kNone : AnswerSource::kAnswerTag;
    return out;
  }
  bool found = false;
  std::string_view boxed = LastBoxed(s, &found);
  if (found) {
    out.answer = TrimAnswer(boxed);
    out.source = out.answer.empty() ? AnswerSource::kNone : AnswerSource::kBoxed;
    return out;
  }
  size_t hashes = s.rfind("####");
  if (hashes != kNpos) {
    std::string_view rest = s.substr(hashes + 4);
    size_t nl = rest.find('\n');
    if (nl != kNpos) rest = rest.substr(0, nl);
    if (rest.size() > kMaxPhraseAnswer) rest = rest.substr(0, kMaxPhraseAnswer);
    out.answer = TrimAnswer(rest);
    if (!out.answer.empty()) {
      out.source = AnswerSource::kHashes;
      return out;
    }
  }
  std::string_view after;
  if (LastPhrase(s, &after)) {
    out.answer = TrimAnswer(AnswerAfterPhrase(after));
    if (!out.answer.empty()) {
      out.source = AnswerSource::kPhrase;
      return out;
    }
  }
  std::string_view whole = TrimAnswer(s);
  if (options.take_whole_answer && LooksLikeBareAnswer(whole, options)) {
    out.answer = whole;
    out.source = AnswerSource::kWhole;
    return out;
  }
  if (options.fallback_last_number) {
    out.answer = LastNumber(s);
    if (!out.answer.empty()) out.source = AnswerSource::kLastNumber;
  }
  return out;
}

std::string_view ExtractGold(std::string_view gold) {
  bool found = false;
  std::string_view boxed = LastBoxed(gold, &found);
  if (found) return TrimAnswer(boxed);
  size_t hashes = gold.rfind("####");
  if (hashes != kNpos) return TrimAnswer(gold.substr(hashes + 4));
  return TrimAnswer(gold);
}

}  // namespace rlvr::verifiers::math
