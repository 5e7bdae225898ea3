#include "policy/text/chat_template.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "policy/text/unicode.h"

namespace rlvr::policy {
namespace {

using OJson = nlohmann::ordered_json;

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ------------------------------------------------------------------------------------------
// Values (Python semantics).

struct Value;
struct ValueDict;
class Evaluator;
using ValueList = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Builtin = std::function<absl::StatusOr<Value>(Evaluator&, std::vector<Value>&, Kwargs&)>;

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };
  Kind kind = Kind::kUndefined;
  // kBool: the value; kList: a tuple (printed with parentheses); kCallable: errors already name
  // a template location.
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // the string, or for kUndefined a description used in error messages
  std::shared_ptr<ValueList> list;
  std::shared_ptr<ValueDict> dict;
  std::shared_ptr<Builtin> fn;

  static Value Undefined(std::string what) {
    Value v;
    v.s = std::move(what);
    return v;
  }
  static Value None() {
    Value v;
    v.kind = Kind::kNone;
    return v;
  }
  static Value Bool(bool x) {
    Value v;
    v.kind = Kind::kBool;
    v.b = x;
    return v;
  }
  static Value Int(int64_t x) {
    Value v;
    v.kind = Kind::kInt;
    v.i = x;
    return v;
  }
  static Value Float(double x) {
    Value v;
    v.kind = Kind::kFloat;
    v.f = x;
    return v;
  }
  static Value Str(std::string x) {
    Value v;
    v.kind = Kind::kString;
    v.s = std::move(x);
    return v;
  }
  static Value List(ValueList items) {
    Value v;
    v.kind = Kind::kList;
    v.list = std::make_shared<ValueList>(std::move(items));
    return v;
  }
  static Value Dict(std::shared_ptr<ValueDict> d) {
    Value v;
    v.kind = Kind::kDict;
    v.dict = std::move(d);
    return v;
  }
  static Value Function(Builtin f) {
    Value v;
    v.kind = Kind::kCallable;
    v.fn = std::make_shared<Builtin>(std::move(f));
    return v;
  }
  bool IsUndefined() const { return kind == Kind::kUndefined; }
  bool IsNumber() const {
    return kind == Kind::kBool || kind == Kind::kInt || kind == Kind::kFloat;
  }
  double AsDouble() const {
    return kind == Kind::kFloat ? f : kind == Kind::kInt ? static_cast<double>(i) : (b ? 1 : 0);
  }
  int64_t AsInt() const { return kind == Kind::kInt ? i : kind == Kind::kBool ? (b ? 1 : 0) : 0; }
};

struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  const Value* Find(std::string_view key) const {
    for (const auto& [k, v] : items) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  void Set(const std::string& key, Value v) {
    for (auto& [k, old] : items) {
      if (k == key) {
        old = std::move(v);
        return;
      }
    }
    items.emplace_back(key, std::move(v));
  }
};

const char* TypeName(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kCallable:
      return "function";
  }
  return "?";
}

Value FromJson(const OJson& j) {
  switch (j.type()) {
    case OJson::value_t::null:
      return Value::None();
    case OJson::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case OJson::value_t::number_integer:
      return Value::Int(j.get<int64_t>());
    case OJson::value_t::number_unsigned:
      return Value::Int(static_cast<int64_t>(j.get<uint64_t>()));
    case OJson::value_t::number_float:
      return Value::Float(j.get<double>());
    case OJson::value_t::string:
      return Value::Str(j.get<std::string>());
    case OJson::value_t::array: {
      ValueList items;
      for (const OJson& e : j) items.push_back(FromJson(e));
      return Value::List(std::move(items));
    }
    case OJson::value_t::object: {
      auto d = std::make_shared<ValueDict>();
      for (auto it = j.begin(); it != j.end(); ++it) d->items.emplace_back(it.key(), FromJson(*it));
      return Value::Dict(std::move(d));
    }
    default:
      return Value::None();
  }
}

// Python's repr(float): the shortest round-trip digits, in exponent form below 1e-4 or from
// 1e16 up, and always with a '.0' or an exponent so it reads back as a float.
std::string PyFloat(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  bool neg = false;
  if (!mant.empty() && mant[0] == '-') {
    neg = true;
    mant.erase(0, 1);
  }
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits.push_back(c);
  }
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out = "0." + std::string(-exp - 1, '0') + digits;
  } else {
    const size_t int_len = static_cast<size_t>(exp) + 1;
    if (digits.size() <= int_len) {
      out = digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return neg ? "-" + out : out;
}

std::string PyRepr(const Value& v);

std::string PyStr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.b ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.i);
    case Value::Kind::kFloat:
      return PyFloat(v.f);
    case Value::Kind::kString:
      return v.s;
    case Value::Kind::kList: {
      std::string out = v.b ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += ", ";
        out += PyRepr((*v.list)[k]);
      }
      if (v.b && v.list->size() == 1) out += ",";
      return out + (v.b ? ")" : "]");
    }
    case Value::Kind::kDict: {
      if (v.dict->is_namespace) return "<Namespace>";
      std::string out = "{";
      for (size_t k = 0; k < v.dict->items.size(); ++k) {
        if (k) out += ", ";
        out += PyRepr(Value::Str(v.dict->items[k].first)) + ": " + PyRepr(v.dict->items[k].second);
      }
      return out + "}";
    }
    case Value::Kind::kCallable:
      return "<function>";
  }
  return "";
}

std::string PyRepr(const Value& v) {
  if (v.kind != Value::Kind::kString) return PyStr(v);
  const bool has_single = v.s.find('\'') != std::string::npos;
  const bool has_double = v.s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : v.s) {
    const auto u = static_cast<uint8_t>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + quote;
}

void JsonString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    const auto u = static_cast<uint8_t>(c);
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

// json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys); indent < 0 is None.
absl::Status ToJson(const Value& v, int indent, bool sort_keys, int depth, std::string* out) {
  const auto newline = [&](int d) {
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * d, ' ');
  };
  switch (v.kind) {
    case Value::Kind::kNone:
      *out += "null";
      return absl::OkStatus();
    case Value::Kind::kBool:
      *out += v.b ? "true" : "false";
      return absl::OkStatus();
    case Value::Kind::kInt:
      *out += std::to_string(v.i);
      return absl::OkStatus();
    case Value::Kind::kFloat:
      if (std::isnan(v.f)) {
        *out += "NaN";
      } else if (std::isinf(v.f)) {
        *out += v.f > 0 ? "Infinity" : "-Infinity";
      } else {
        *out += PyFloat(v.f);
      }
      return absl::OkStatus();
    case Value::Kind::kString:
      JsonString(v.s, out);
      return absl::OkStatus();
    case Value::Kind::kList: {
      if (v.list->empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) *out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        RLVR_RETURN_IF_ERROR(ToJson((*v.list)[k], indent, sort_keys, depth + 1, out));
      }
      if (indent >= 0) newline(depth);
      out->push_back(']');
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      if (v.dict->items.empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : v.dict->items) items.push_back(&item);
      if (sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      }
      out->push_back('{');
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) *out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        JsonString(items[k]->first, out);
        *out += ": ";
        RLVR_RETURN_IF_ERROR(ToJson(items[k]->second, indent, sort_keys, depth + 1, out));
      }
      if (indent >= 0) newline(depth);
      out->push_back('}');
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
  }
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.b;
    case Value::Kind::kInt:
      return v.i != 0;
    case Value::Kind::kFloat:
      return v.f != 0;
    case Value::Kind::kString:
      return !v.s.empty();
    case Value::Kind::kList:
      return !v.list->empty();
    case Value::Kind::kDict:
      return !v.dict->items.empty();
    case Value::Kind::kCallable:
      return true;
  }
  return false;
}

bool Equal(const Value& a, const Value& b) {
  if (a.IsNumber() && b.IsNumber()) {
    if (a.kind == Value::Kind::kFloat || b.kind == Value::Kind::kFloat) {
      return a.AsDouble() == b.AsDouble();
    }
    return a.AsInt() == b.AsInt();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.s == b.s;
    case Value::Kind::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k) {
        if (!Equal((*a.list)[k], (*b.list)[k])) return false;
      }
      return true;
    case Value::Kind::kDict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, v] : a.dict->items) {
        const Value* o = b.dict->Find(k);
        if (o == nullptr || !Equal(v, *o)) return false;
      }
      return true;
    case Value::Kind::kCallable:
      return a.fn == b.fn;
    default:
      return false;
  }
}

// Code points of valid UTF-8 (template strings come from JSON and template source).
std::vector<std::string> Chars(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 1;
    const auto b = static_cast<uint8_t>(s[pos]);
    if (b >= 0xF0) {
      len = 4;
    } else if (b >= 0xE0) {
      len = 3;
    } else if (b >= 0xC0) {
      len = 2;
    }
    len = std::min(len, s.size() - pos);
    out.push_back(s.substr(pos, len));
    pos += len;
  }
  return out;
}

// str.lower/upper/title/capitalize by code point with ICU's simple case mappings.
std::string MapCase(const std::string& s, const std::string& mode) {
  std::string out;
  out.reserve(s.size());
  bool word_start = true;
  bool first = true;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len;
    const char32_t cp = DecodeUtf8At(s, pos, &len);
    pos += len;
    const auto c = static_cast<UChar32>(cp);
    UChar32 r = c;
    if (mode == "lower") {
      r = u_tolower(c);
    } else if (mode == "upper") {
      r = u_toupper(c);
    } else if (mode == "capitalize") {
      r = first ? u_totitle(c) : u_tolower(c);
    } else {
      const bool cased = u_isUUppercase(c) || u_isULowercase(c) || u_istitle(c);
      if (cased) {
        r = word_start ? u_totitle(c) : u_tolower(c);
        word_start = false;
      } else {
        word_start = true;
      }
    }
    first = false;
    AppendUtf8(static_cast<char32_t>(r), &out);
  }
  return out;
}

bool IsPySpace(char32_t cp) { return IsUnicodeWhitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// str.strip/lstrip/rstrip: `chars` null strips whitespace.
std::string PyStrip(const std::string& s, const std::string* chars, bool left, bool right) {
  std::vector<std::string> cs = Chars(s);
  std::vector<std::string> set;
  if (chars != nullptr) set = Chars(*chars);
  const auto strip_this = [&](const std::string& c) {
    if (chars == nullptr) {
      size_t len;
      return IsPySpace(DecodeUtf8At(c, 0, &len));
    }
    return std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cs.size();
  if (left) {
    while (b < e && strip_this(cs[b])) ++b;
  }
  if (right) {
    while (e > b && strip_this(cs[e - 1])) --e;
  }
  std::string out;
  for (size_t k = b; k < e; ++k) out += cs[k];
  return out;
}

std::vector<std::string> PySplit(const std::string& s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep == nullptr) {
    std::vector<std::string> cs = Chars(s);
    size_t k = 0;
    const auto space = [&](size_t idx) {
      size_t len;
      return IsPySpace(DecodeUtf8At(cs[idx], 0, &len));
    };
    while (k < cs.size()) {
      while (k < cs.size() && space(k)) ++k;
      if (k >= cs.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        std::string rest;
        for (; k < cs.size(); ++k) rest += cs[k];
        // Python strips trailing whitespace from the remainder only when splitting on runs.
        out.push_back(PyStrip(rest, nullptr, false, true));
        return out;
      }
      std::string word;
      while (k < cs.size() && !space(k)) word += cs[k++];
      out.push_back(word);
    }
    return out;
  }
  size_t start = 0;
  while (true) {
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) break;
    const size_t at = s.find(*sep, start);
    if (at == std::string::npos) break;
    out.push_back(s.substr(start, at - start));
    start = at + sep->size();
  }
  out.push_back(s.substr(start));
  return out;
}

// Python slice index adjustment for a sequence of length n.
std::vector<int64_t> SliceIndices(int64_t n, const Value& start_v, const Value& stop_v,
                                  const Value& step_v) {
  const int64_t step = step_v.IsNumber() ? step_v.AsInt() : 1;
  int64_t start, stop;
  const auto clamp = [&](const Value& v, int64_t dflt, bool is_start) {
    if (!v.IsNumber()) return dflt;
    int64_t x = v.AsInt();
    if (x < 0) x += n;
    if (step > 0) return std::clamp<int64_t>(x, 0, n);
    (void)is_start;
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  if (step > 0) {
    start = clamp(start_v, 0, true);
    stop = clamp(stop_v, n, false);
  } else {
    start = clamp(start_v, n - 1, true);
    stop = clamp(stop_v, -1, false);
  }
  std::vector<int64_t> idx;
  if (step > 0) {
    for (int64_t k = start; k < stop; k += step) idx.push_back(k);
  } else if (step < 0) {
    for (int64_t k = start; k > stop; k += step) idx.push_back(k);
  }
  return idx;
}

// ------------------------------------------------------------------------------------------
// Lexer.

struct Token {
  enum class Type { kName, kString, kInt, kFloat, kOp, kEnd } type;
  std::string text;  // name, operator, or unescaped string
  size_t pos;        // byte offset in the template
  int64_t int_value = 0;
  double float_value = 0;
};

struct Chunk {
  enum class Type { kText, kExpr, kStmt } type;
  std::string text;           // for kText
  std::vector<Token> tokens;  // for kExpr and kStmt, ending with kEnd
  size_t pos;
};

class SourceMap {
 public:
  SourceMap(std::string name, const std::string& source) : name_(std::move(name)) {
    line_starts_.push_back(0);
    for (size_t k = 0; k < source.size(); ++k) {
      if (source[k] == '\n') line_starts_.push_back(k + 1);
    }
  }
  std::string Where(size_t pos) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    const size_t line = static_cast<size_t>(it - line_starts_.begin());
    const size_t col = pos - line_starts_[line - 1] + 1;
    return absl::StrCat(name_, ":", line, ":", col);
  }
  absl::Status Error(size_t pos, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(pos), ": ", Sv(message)));
  }

 private:
  std::string name_;
  std::vector<size_t> line_starts_;
};

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

class Lexer {
 public:
  Lexer(const std::string& src, const SourceMap& map) : src_(src), map_(map) {}

  absl::StatusOr<std::vector<Chunk>> Run() {
    std::vector<Chunk> chunks;
    size_t i = 0;
    bool strip_next = false;  // a '-' closer strips the whitespace that follows
    while (i <= src_.size()) {
      size_t open = src_.size();
      for (size_t k = i; k + 1 < src_.size(); ++k) {
        if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) {
          open = k;
          break;
        }
      }
      std::string text = src_.substr(i, open - i);
      if (strip_next) {
        size_t b = 0;
        while (b < text.size() && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
        text.erase(0, b);
        strip_next = false;
      }
      if (open == src_.size()) {
        if (!text.empty()) chunks.push_back({Chunk::Type::kText, std::move(text), {}, i});
        break;
      }
      const char kind = src_[open + 1];
      size_t p = open + 2;
      const char modifier = p < src_.size() ? src_[p] : '\0';
      if (modifier == '-') {
        size_t e = text.size();
        while (e > 0 && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
        text.resize(e);
        ++p;
      } else if (modifier == '+') {
        ++p;
      } else if (kind != '{') {
        // lstrip_blocks: drop spaces and tabs between the line start and a block or comment.
        const size_t nl = text.rfind('\n');
        const size_t line_start = nl == std::string::npos ? 0 : nl + 1;
        const bool at_line_start = nl != std::string::npos || i == 0 || src_[i - 1] == '\n';
        if (at_line_start && text.find_first_not_of(" \t", line_start) == std::string::npos) {
          text.resize(line_start);
        }
      }
      if (!text.empty()) chunks.push_back({Chunk::Type::kText, std::move(text), {}, i});

      if (kind == '#') {
        const size_t close = src_.find("#}", p);
        if (close == std::string::npos) return map_.Error(open, "unterminated comment");
        const bool minus = close > p && src_[close - 1] == '-';
        i = close + 2;
        if (minus) {
          strip_next = true;
        } else if (i < src_.size() && src_[i] == '\n') {
          ++i;  // trim_blocks
        }
        continue;
      }
      Chunk chunk{kind == '{' ? Chunk::Type::kExpr : Chunk::Type::kStmt, "", {}, open};
      const std::string closer = kind == '{' ? "}}" : "%}";
      bool closed = false;
      bool trimmed_newline = false;
      while (p < src_.size()) {
        while (p < src_.size() && std::isspace(static_cast<unsigned char>(src_[p]))) ++p;
        if (p >= src_.size()) break;
        if ((src_[p] == '-' || src_[p] == '+') && src_.compare(p + 1, 2, closer) == 0) {
          if (src_[p] == '-') strip_next = true;
          const bool plus = src_[p] == '+';
          p += 3;
          if (!plus && kind == '%' && p < src_.size() && src_[p] == '\n') {
            ++p;
            trimmed_newline = true;
          }
          closed = true;
          break;
        }
        if (src_.compare(p, 2, closer) == 0) {
          p += 2;
          if (kind == '%' && p < src_.size() && src_[p] == '\n') {  // trim_blocks
            ++p;
            trimmed_newline = true;
          }
          closed = true;
          break;
        }
        RLVR_ASSIGN_OR_RETURN(Token tok, NextToken(&p));
        chunk.tokens.push_back(std::move(tok));
      }
      if (!closed) {
        return map_.Error(open, absl::StrCat("unterminated '{", std::string(1, kind), "' tag"));
      }
      chunk.tokens.push_back({Token::Type::kEnd, "", p});
      i = p;
      // {% raw %} ... {% endraw %}: the body is text.
      if (chunk.type == Chunk::Type::kStmt && chunk.tokens.size() == 2 &&
          chunk.tokens[0].type == Token::Type::kName && chunk.tokens[0].text == "raw") {
        if (trimmed_newline) --i;  // trim_blocks does not apply to the opening raw tag
        size_t search = i;
        size_t body_end = std::string::npos, after = 0;
        while (true) {
          const size_t at = src_.find("{%", search);
          if (at == std::string::npos) break;
          size_t q = at + 2;
          const bool minus_open = q < src_.size() && src_[q] == '-';
          if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
          while (q < src_.size() && std::isspace(static_cast<unsigned char>(src_[q]))) ++q;
          if (src_.compare(q, 6, "endraw") == 0) {
            q += 6;
            while (q < src_.size() && std::isspace(static_cast<unsigned char>(src_[q]))) ++q;
            bool minus_close = false;
            if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) {
              minus_close = src_[q] == '-';
              ++q;
            }
            if (src_.compare(q, 2, "%}") == 0) {
              body_end = at;
              after = q + 2;
              std::string body = src_.substr(i, body_end - i);
              if (strip_next) {
                size_t b = 0;
                while (b < body.size() && std::isspace(static_cast<unsigned char>(body[b]))) ++b;
                body.erase(0, b);
                strip_next = false;
              }
              if (minus_open) {
                size_t e = body.size();
                while (e > 0 && std::isspace(static_cast<unsigned char>(body[e - 1]))) --e;
                body.resize(e);
              }
              if (!body.empty()) chunks.push_back({Chunk::Type::kText, body, {}, i});
              if (minus_close) {
                strip_next = true;
              } else if (after < src_.size() && src_[after] == '\n') {
                ++after;
              }
              break;
            }
          }
          search = at + 2;
        }
        if (body_end == std::string::npos) return map_.Error(open, "missing {% endraw %}");
        i = after;
        continue;
      }
      chunks.push_back(std::move(chunk));
    }
    return chunks;
  }

 private:
  absl::StatusOr<Token> NextToken(size_t* pp) {
    size_t p = *pp;
    const char c = src_[p];
    Token tok{Token::Type::kOp, "", p};
    if (IsNameStart(c)) {
      size_t e = p;
      while (e < src_.size() && IsNameChar(src_[e])) ++e;
      tok.type = Token::Type::kName;
      tok.text = src_.substr(p, e - p);
      *pp = e;
      return tok;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t e = p;
      while (e < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_'))
        ++e;
      bool is_float = false;
      if (e + 1 < src_.size() && src_[e] == '.' &&
          std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
        is_float = true;
        ++e;
        while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
      }
      if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
        size_t q = e + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
          is_float = true;
          e = q;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        }
      }
      std::string num;
      for (size_t k = p; k < e; ++k) {
        if (src_[k] != '_') num.push_back(src_[k]);
      }
      tok.text = num;
      if (is_float) {
        tok.type = Token::Type::kFloat;
        tok.float_value = std::strtod(num.c_str(), nullptr);
      } else {
        tok.type = Token::Type::kInt;
        tok.int_value = std::strtoll(num.c_str(), nullptr, 10);
      }
      *pp = e;
      return tok;
    }
    if (c == '\'' || c == '"') {
      std::string out;
      size_t k = p + 1;
      while (k < src_.size() && src_[k] != c) {
        if (src_[k] == '\\' && k + 1 < src_.size()) {
          const char n = src_[k + 1];
          k += 2;
          switch (n) {
            case 'n':
              out += '\n';
              break;
            case 't':
              out += '\t';
              break;
            case 'r':
              out += '\r';
              break;
            case '0':
              out += '\0';
              break;
            case '\\':
            case '\'':
            case '"':
              out += n;
              break;
            case '\n':
              break;
            case 'x':
            case 'u':
            case 'U': {
              const size_t len = n == 'x' ? 2 : n == 'u' ? 4 : 8;
              if (k + len > src_.size()) return map_.Error(k, "truncated escape");
              const std::string hex = src_.substr(k, len);
              char* end = nullptr;
              const unsigned long cp = std::strtoul(hex.c_str(), &end, 16);
              if (end != hex.c_str() + len || cp > 0x10FFFF) {
                return map_.Error(k, "bad escape");
              }
              AppendUtf8(static_cast<char32_t>(cp), &out);
              k += len;
              break;
            }
            default:
              out += '\\';
              out += n;
          }
          continue;
        }
        out += src_[k++];
      }
      if (k >= src_.size()) return map_.Error(p, "unterminated string");
      tok.type = Token::Type::kString;
      tok.text = std::move(out);
      *pp = k + 1;
      return tok;
    }
    static const char* const kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                       "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                       "]",  "{",  "}",  ",",  ".",  ":",  "|"};
    for (const char* op : kOps) {
      const size_t len = std::strlen(op);
      if (src_.compare(p, len, op) == 0) {
        tok.text = op;
        *pp = p + len;
        return tok;
      }
    }
    return map_.Error(p, absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }

  const std::string& src_;
  const SourceMap& map_;
};

// ------------------------------------------------------------------------------------------
// AST.

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kList,
    kDict,
    kGetAttr,
    kGetItem,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kNeg,
    kPos,
    kNot,
    kBinary,
    kAnd,
    kOr,
    kCompare,
    kCond
  };
  Kind kind;
  size_t pos;
  Value literal;
  std::string name;                         // name, attribute, filter, test or operator
  std::vector<std::unique_ptr<Expr>> args;  // operands; call/filter/test: [target, args...]
  std::vector<std::string> kw_names;        // the last kw_names.size() args are keywords
  std::vector<std::string> ops;             // kCompare operators
  bool negated = false;                     // kTest: `is not`; kList: a tuple
};

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue, kBlock };
  Kind kind;
  size_t pos;
  std::string text;
  std::unique_ptr<Expr> expr;
  std::vector<std::string> targets;  // for: loop variables; set: {name} or {ns, attr}; macro
  std::vector<std::unique_ptr<Expr>> defaults;  // macro parameter defaults (null if none)
  std::unique_ptr<Expr> filter;                 // for ... if filter
  std::vector<std::pair<std::unique_ptr<Expr>, std::vector<std::unique_ptr<Node>>>> branches;
  std::vector<std::unique_ptr<Node>> body, else_body;
};

using Body = std::vector<std::unique_ptr<Node>>;

// ------------------------------------------------------------------------------------------
// Parser.

// Limits that keep hostile templates from exhausting the stack, memory or time.
constexpr int kMaxNesting = 200;
constexpr int64_t kMaxSteps = 20'000'000;
constexpr size_t kMaxOutputBytes = size_t{64} << 20;

// Counts recursion depth for the lifetime of a parse function.
class Nest {
 public:
  explicit Nest(int* depth) : depth_(depth) { ++*depth_; }
  ~Nest() { --*depth_; }
  Nest(const Nest&) = delete;
  Nest& operator=(const Nest&) = delete;

 private:
  int* depth_;
};

class Parser {
 public:
  Parser(std::vector<Chunk> chunks, const SourceMap& map) : chunks_(std::move(chunks)), map_(map) {}

  absl::StatusOr<Body> ParseTemplate() {
    Body body;
    std::string end;
    RLVR_RETURN_IF_ERROR(ParseBody({}, &body, &end));
    return body;
  }

 private:
  // Parses nodes until a statement whose first word is in `ends` (left in *end_word with the
  // tag's tokens current), or the end of the template (only valid when `ends` is empty).
  absl::Status ParseBody(const std::vector<std::string>& ends, Body* body, std::string* end_word) {
    while (chunk_ < chunks_.size()) {
      Chunk& c = chunks_[chunk_];
      if (c.type == Chunk::Type::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->pos = c.pos;
        n->text = c.text;
        body->push_back(std::move(n));
        ++chunk_;
        continue;
      }
      toks_ = &c.tokens;
      tok_ = 0;
      if (c.type == Chunk::Type::kExpr) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->pos = c.pos;
        RLVR_ASSIGN_OR_RETURN(n->expr, ParseExpression());
        RLVR_RETURN_IF_ERROR(ExpectEnd());
        body->push_back(std::move(n));
        ++chunk_;
        continue;
      }
      if (Cur().type != Token::Type::kName) return map_.Error(Cur().pos, "expected a statement");
      const std::string word = Cur().text;
      if (std::find(ends.begin(), ends.end(), word) != ends.end()) {
        *end_word = word;
        return absl::OkStatus();
      }
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(std::unique_ptr<Node> n, ParseStatement(word, c.pos));
      body->push_back(std::move(n));
    }
    if (!ends.empty()) {
      return map_.Error(
          chunks_.empty() ? 0 : chunks_.back().pos,
          absl::StrCat("unexpected end of template, expected '{% ", ends.back(), " %}'"));
    }
    return absl::OkStatus();
  }

  // Moves past the current statement chunk after checking nothing follows the tag's words.
  absl::Status FinishTag() {
    RLVR_RETURN_IF_ERROR(ExpectEnd());
    ++chunk_;
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseStatement(const std::string& word, size_t pos) {
    Nest nest(&nesting_);
    if (nesting_ > kMaxNesting) return map_.Error(pos, "statements nested too deeply");
    auto n = std::make_unique<Node>();
    n->pos = pos;
    if (word == "if") {
      n->kind = Node::Kind::kIf;
      RLVR_ASSIGN_OR_RETURN(auto cond, ParseExpression());
      RLVR_RETURN_IF_ERROR(FinishTag());
      while (true) {
        Body body;
        std::string end;
        RLVR_RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &body, &end));
        n->branches.emplace_back(std::move(cond), std::move(body));
        ++tok_;
        if (end == "elif") {
          RLVR_ASSIGN_OR_RETURN(cond, ParseExpression());
          RLVR_RETURN_IF_ERROR(FinishTag());
          continue;
        }
        RLVR_RETURN_IF_ERROR(FinishTag());
        if (end == "else") {
          std::string end2;
          RLVR_RETURN_IF_ERROR(ParseBody({"endif"}, &n->else_body, &end2));
          ++tok_;
          RLVR_RETURN_IF_ERROR(FinishTag());
        }
        return n;
      }
    }
    if (word == "for") {
      n->kind = Node::Kind::kFor;
      const bool paren = Accept("(");
      do {
        RLVR_ASSIGN_OR_RETURN(std::string target, ExpectName());
        n->targets.push_back(target);
      } while (Accept(","));
      if (paren) RLVR_RETURN_IF_ERROR(Expect(")"));
      if (!AcceptName("in")) return map_.Error(Cur().pos, "expected 'in'");
      RLVR_ASSIGN_OR_RETURN(n->expr, ParseExpression(/*with_condexpr=*/false));
      if (AcceptName("if")) {
        RLVR_ASSIGN_OR_RETURN(n->filter, ParseExpression(false));
      }
      if (AcceptName("recursive")) {
        return map_.Error(Cur().pos, "recursive loops are not supported");
      }
      RLVR_RETURN_IF_ERROR(FinishTag());
      std::string end;
      RLVR_RETURN_IF_ERROR(ParseBody({"else", "endfor"}, &n->body, &end));
      ++tok_;
      RLVR_RETURN_IF_ERROR(FinishTag());
      if (end == "else") {
        RLVR_RETURN_IF_ERROR(ParseBody({"endfor"}, &n->else_body, &end));
        ++tok_;
        RLVR_RETURN_IF_ERROR(FinishTag());
      }
      return n;
    }
    if (word == "set") {
      RLVR_ASSIGN_OR_RETURN(std::string target, ExpectName());
      n->targets.push_back(target);
      if (Accept(".")) {
        RLVR_ASSIGN_OR_RETURN(std::string attr, ExpectName());
        n->targets.push_back(attr);
      }
      if (Accept("=")) {
        n->kind = Node::Kind::kSet;
        RLVR_ASSIGN_OR_RETURN(n->expr, ParseExpression());
        RLVR_RETURN_IF_ERROR(FinishTag());
        return n;
      }
      n->kind = Node::Kind::kSetBlock;
      RLVR_RETURN_IF_ERROR(FinishTag());
      std::string end;
      RLVR_RETURN_IF_ERROR(ParseBody({"endset"}, &n->body, &end));
      ++tok_;
      RLVR_RETURN_IF_ERROR(FinishTag());
      return n;
    }
    if (word == "macro") {
      n->kind = Node::Kind::kMacro;
      RLVR_ASSIGN_OR_RETURN(n->text, ExpectName());
      RLVR_RETURN_IF_ERROR(Expect("("));
      if (!Accept(")")) {
        do {
          RLVR_ASSIGN_OR_RETURN(std::string param, ExpectName());
          n->targets.push_back(param);
          if (Accept("=")) {
            RLVR_ASSIGN_OR_RETURN(auto dflt, ParseExpression());
            n->defaults.push_back(std::move(dflt));
          } else {
            n->defaults.push_back(nullptr);
          }
        } while (Accept(","));
        RLVR_RETURN_IF_ERROR(Expect(")"));
      }
      RLVR_RETURN_IF_ERROR(FinishTag());
      std::string end;
      RLVR_RETURN_IF_ERROR(ParseBody({"endmacro"}, &n->body, &end));
      ++tok_;
      RLVR_RETURN_IF_ERROR(FinishTag());
      return n;
    }
    if (word == "break" || word == "continue") {
      n->kind = word == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      RLVR_RETURN_IF_ERROR(FinishTag());
      return n;
    }
    if (word == "generation") {
      n->kind = Node::Kind::kBlock;
      RLVR_RETURN_IF_ERROR(FinishTag());
      std::string end;
      RLVR_RETURN_IF_ERROR(ParseBody({"endgeneration"}, &n->body, &end));
      ++tok_;
      RLVR_RETURN_IF_ERROR(FinishTag());
      return n;
    }
    return map_.Error(pos, absl::StrCat("unknown or misplaced statement '", word, "'"));
  }

  // ---- expressions

  const Token& Cur() const { return (*toks_)[tok_]; }
  bool IsOp(const char* op) const { return Cur().type == Token::Type::kOp && Cur().text == op; }
  bool IsName(const char* name) const {
    return Cur().type == Token::Type::kName && Cur().text == name;
  }
  bool Accept(const char* op) {
    if (!IsOp(op)) return false;
    ++tok_;
    return true;
  }
  bool AcceptName(const char* name) {
    if (!IsName(name)) return false;
    ++tok_;
    return true;
  }
  absl::Status Expect(const char* op) {
    if (!Accept(op)) {
      return map_.Error(Cur().pos, absl::StrCat("expected '", op, "', got ", Describe(Cur())));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != Token::Type::kName) {
      return map_.Error(Cur().pos, absl::StrCat("expected a name, got ", Describe(Cur())));
    }
    return (*toks_)[tok_++].text;
  }
  absl::Status ExpectEnd() {
    if (Cur().type != Token::Type::kEnd) {
      return map_.Error(Cur().pos, absl::StrCat("unexpected ", Describe(Cur())));
    }
    return absl::OkStatus();
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kEnd:
        return "end of tag";
      case Token::Type::kString:
        return "a string";
      default:
        return absl::StrCat("'", t.text, "'");
    }
  }

  std::unique_ptr<Expr> Make(Expr::Kind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseExpression(bool with_condexpr = true) {
    Nest nest(&nesting_);
    if (nesting_ > kMaxNesting) return map_.Error(Cur().pos, "expression nested too deeply");
    RLVR_ASSIGN_OR_RETURN(auto expr, ParseOr());
    if (!with_condexpr) return expr;
    while (IsName("if")) {
      const size_t pos = Cur().pos;
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(auto cond, ParseOr());
      auto e = Make(Expr::Kind::kCond, pos);
      e->args.push_back(std::move(expr));
      e->args.push_back(std::move(cond));
      if (AcceptName("else")) {
        RLVR_ASSIGN_OR_RETURN(auto other, ParseExpression());
        e->args.push_back(std::move(other));
      } else {
        e->args.push_back(nullptr);
      }
      expr = std::move(e);
    }
    return expr;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseOr() {
    RLVR_ASSIGN_OR_RETURN(auto left, ParseAnd());
    while (IsName("or")) {
      auto e = Make(Expr::Kind::kOr, Cur().pos);
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(auto right, ParseAnd());
      e->args.push_back(std::move(left));
      e->args.push_back(std::move(right));
      left = std::move(e);
    }
    return left;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseAnd() {
    RLVR_ASSIGN_OR_RETURN(auto left, ParseNot());
    while (IsName("and")) {
      auto e = Make(Expr::Kind::kAnd, Cur().pos);
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(auto right, ParseNot());
      e->args.push_back(std::move(left));
      e->args.push_back(std::move(right));
      left = std::move(e);
    }
    return left;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseNot() {
    Nest nest(&nesting_);
    if (nesting_ > kMaxNesting) return map_.Error(Cur().pos, "expression nested too deeply");
    if (IsName("not")) {
      auto e = Make(Expr::Kind::kNot, Cur().pos);
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(auto operand, ParseNot());
      e->args.push_back(std::move(operand));
      return e;
    }
    return ParseCompare();
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseCompare() {
    const size_t pos = Cur().pos;
    RLVR_ASSIGN_OR_RETURN(auto left, ParseMath1());
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
        op = Cur().text;
        ++tok_;
      } else if (IsName("in")) {
        op = "in";
        ++tok_;
      } else if (IsName("not") && tok_ + 1 < toks_->size() &&
                 (*toks_)[tok_ + 1].type == Token::Type::kName && (*toks_)[tok_ + 1].text == "in") {
        op = "not in";
        tok_ += 2;
      } else {
        break;
      }
      if (cmp == nullptr) {
        cmp = Make(Expr::Kind::kCompare, pos);
        cmp->args.push_back(std::move(left));
      }
      RLVR_ASSIGN_OR_RETURN(auto right, ParseMath1());
      cmp->ops.push_back(op);
      cmp->args.push_back(std::move(right));
    }
    return cmp != nullptr ? std::move(cmp) : std::move(left);
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseBinaryLevel(
      const std::vector<const char*>& ops,
      absl::StatusOr<std::unique_ptr<Expr>> (Parser::*next)()) {
    RLVR_ASSIGN_OR_RETURN(auto left, (this->*next)());
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops) {
        if (IsOp(op)) matched = op;
      }
      if (matched == nullptr) break;
      auto e = Make(Expr::Kind::kBinary, Cur().pos);
      e->name = matched;
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(auto right, (this->*next)());
      e->args.push_back(std::move(left));
      e->args.push_back(std::move(right));
      left = std::move(e);
    }
    return left;
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseMath1() {
    return ParseBinaryLevel({"+", "-"}, &Parser::ParseConcat);
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseConcat() {
    return ParseBinaryLevel({"~"}, &Parser::ParseMath2);
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseMath2() {
    return ParseBinaryLevel({"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParsePow() {
    return ParseBinaryLevel({"**"}, &Parser::ParseUnaryWithFilter);
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseUnaryWithFilter() { return ParseUnary(true); }

  absl::StatusOr<std::unique_ptr<Expr>> ParseUnary(bool with_filter) {
    Nest nest(&nesting_);
    if (nesting_ > kMaxNesting) return map_.Error(Cur().pos, "expression nested too deeply");
    std::unique_ptr<Expr> node;
    if (IsOp("-") || IsOp("+")) {
      auto e = Make(IsOp("-") ? Expr::Kind::kNeg : Expr::Kind::kPos, Cur().pos);
      ++tok_;
      RLVR_ASSIGN_OR_RETURN(auto operand, ParseUnary(false));
      e->args.push_back(std::move(operand));
      node = std::move(e);
    } else {
      RLVR_ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    RLVR_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      RLVR_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParsePrimary() {
    const Token& t = Cur();
    const size_t pos = t.pos;
    switch (t.type) {
      case Token::Type::kName: {
        auto e = Make(Expr::Kind::kLiteral, pos);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        ++tok_;
        return e;
      }
      case Token::Type::kString: {
        std::string s;
        while (Cur().type == Token::Type::kString) s += (*toks_)[tok_++].text;
        auto e = Make(Expr::Kind::kLiteral, pos);
        e->literal = Value::Str(std::move(s));
        return e;
      }
      case Token::Type::kInt: {
        auto e = Make(Expr::Kind::kLiteral, pos);
        e->literal = Value::Int(t.int_value);
        ++tok_;
        return e;
      }
      case Token::Type::kFloat: {
        auto e = Make(Expr::Kind::kLiteral, pos);
        e->literal = Value::Float(t.float_value);
        ++tok_;
        return e;
      }
      case Token::Type::kOp:
        if (Accept("(")) {
          if (Accept(")")) {
            auto empty = Make(Expr::Kind::kList, pos);
            empty->negated = true;  // a tuple
            return empty;
          }
          RLVR_ASSIGN_OR_RETURN(auto first, ParseExpression());
          if (!IsOp(",")) {
            RLVR_RETURN_IF_ERROR(Expect(")"));
            return first;
          }
          auto e = Make(Expr::Kind::kList, pos);
          e->negated = true;  // a tuple
          e->args.push_back(std::move(first));
          while (Accept(",")) {
            if (IsOp(")")) break;
            RLVR_ASSIGN_OR_RETURN(auto item, ParseExpression());
            e->args.push_back(std::move(item));
          }
          RLVR_RETURN_IF_ERROR(Expect(")"));
          return e;
        }
        if (Accept("[")) {
          auto e = Make(Expr::Kind::kList, pos);
          while (!IsOp("]")) {
            RLVR_ASSIGN_OR_RETURN(auto item, ParseExpression());
            e->args.push_back(std::move(item));
            if (!Accept(",")) break;
          }
          RLVR_RETURN_IF_ERROR(Expect("]"));
          return e;
        }
        if (Accept("{")) {
          auto e = Make(Expr::Kind::kDict, pos);
          while (!IsOp("}")) {
            RLVR_ASSIGN_OR_RETURN(auto key, ParseExpression());
            RLVR_RETURN_IF_ERROR(Expect(":"));
            RLVR_ASSIGN_OR_RETURN(auto value, ParseExpression());
            e->args.push_back(std::move(key));
            e->args.push_back(std::move(value));
            if (!Accept(",")) break;
          }
          RLVR_RETURN_IF_ERROR(Expect("}"));
          return e;
        }
        break;
      default:
        break;
    }
    return map_.Error(pos, absl::StrCat("unexpected ", Describe(t)));
  }

  absl::Status ParseCallArgs(Expr* e) {
    // After '('. Positional arguments first, then name=value ones.
    std::vector<std::unique_ptr<Expr>> kwargs;
    while (!IsOp(")")) {
      if (Cur().type == Token::Type::kName && tok_ + 1 < toks_->size() &&
          (*toks_)[tok_ + 1].type == Token::Type::kOp && (*toks_)[tok_ + 1].text == "=") {
        e->kw_names.push_back(Cur().text);
        tok_ += 2;
        RLVR_ASSIGN_OR_RETURN(auto value, ParseExpression());
        kwargs.push_back(std::move(value));
      } else {
        if (!kwargs.empty()) {
          return map_.Error(Cur().pos, "positional argument after keyword argument");
        }
        RLVR_ASSIGN_OR_RETURN(auto value, ParseExpression());
        e->args.push_back(std::move(value));
      }
      if (!Accept(",")) break;
    }
    RLVR_RETURN_IF_ERROR(Expect(")"));
    for (auto& k : kwargs) e->args.push_back(std::move(k));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParsePostfix(std::unique_ptr<Expr> node) {
    while (true) {
      const size_t pos = Cur().pos;
      if (Accept(".")) {
        auto e = Make(Expr::Kind::kGetAttr, pos);
        if (Cur().type == Token::Type::kInt) {
          e->kind = Expr::Kind::kGetItem;
          e->args.push_back(std::move(node));
          auto idx = Make(Expr::Kind::kLiteral, pos);
          idx->literal = Value::Int(Cur().int_value);
          ++tok_;
          e->args.push_back(std::move(idx));
        } else {
          RLVR_ASSIGN_OR_RETURN(e->name, ExpectName());
          e->args.push_back(std::move(node));
        }
        node = std::move(e);
      } else if (Accept("[")) {
        std::unique_ptr<Expr> parts[3];
        bool is_slice = false;
        if (!IsOp(":")) {
          RLVR_ASSIGN_OR_RETURN(parts[0], ParseExpression());
        }
        if (Accept(":")) {
          is_slice = true;
          if (!IsOp("]") && !IsOp(":")) {
            RLVR_ASSIGN_OR_RETURN(parts[1], ParseExpression());
          }
          if (Accept(":") && !IsOp("]")) {
            RLVR_ASSIGN_OR_RETURN(parts[2], ParseExpression());
          }
        }
        RLVR_RETURN_IF_ERROR(Expect("]"));
        auto e = Make(is_slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem, pos);
        e->args.push_back(std::move(node));
        if (is_slice) {
          for (auto& p : parts) e->args.push_back(std::move(p));
        } else {
          if (parts[0] == nullptr) return map_.Error(pos, "empty subscript");
          e->args.push_back(std::move(parts[0]));
        }
        node = std::move(e);
      } else if (Accept("(")) {
        auto e = Make(Expr::Kind::kCall, pos);
        e->args.push_back(std::move(node));
        RLVR_RETURN_IF_ERROR(ParseCallArgs(e.get()));
        node = std::move(e);
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseFilterExpr(std::unique_ptr<Expr> node) {
    while (true) {
      if (IsOp("|")) {
        const size_t pos = Cur().pos;
        ++tok_;
        auto e = Make(Expr::Kind::kFilter, pos);
        RLVR_ASSIGN_OR_RETURN(e->name, ExpectName());
        while (Accept(".")) {
          RLVR_ASSIGN_OR_RETURN(std::string part, ExpectName());
          e->name += "." + part;
        }
        e->args.push_back(std::move(node));
        if (Accept("(")) RLVR_RETURN_IF_ERROR(ParseCallArgs(e.get()));
        node = std::move(e);
      } else if (IsName("is")) {
        const size_t pos = Cur().pos;
        ++tok_;
        auto e = Make(Expr::Kind::kTest, pos);
        e->negated = AcceptName("not");
        if (Cur().type == Token::Type::kName) {
          e->name = (*toks_)[tok_++].text;
        } else if (Cur().type == Token::Type::kOp && (IsOp("==") || IsOp("!=") || IsOp("<") ||
                                                      IsOp(">") || IsOp("<=") || IsOp(">="))) {
          e->name = (*toks_)[tok_++].text;
        } else {
          return map_.Error(Cur().pos, "expected a test name after 'is'");
        }
        e->args.push_back(std::move(node));
        if (Accept("(")) {
          RLVR_RETURN_IF_ERROR(ParseCallArgs(e.get()));
        } else if ((Cur().type == Token::Type::kName && !IsName("else") && !IsName("or") &&
                    !IsName("and") && !IsName("if") && !IsName("in") && !IsName("not") &&
                    !IsName("is")) ||
                   Cur().type == Token::Type::kString || Cur().type == Token::Type::kInt ||
                   Cur().type == Token::Type::kFloat || IsOp("[") || IsOp("{")) {
          RLVR_ASSIGN_OR_RETURN(auto arg, ParsePrimary());
          RLVR_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
          e->args.push_back(std::move(arg));
        }
        node = std::move(e);
      } else if (IsOp("(")) {
        const size_t pos = Cur().pos;
        ++tok_;
        auto e = Make(Expr::Kind::kCall, pos);
        e->args.push_back(std::move(node));
        RLVR_RETURN_IF_ERROR(ParseCallArgs(e.get()));
        node = std::move(e);
      } else {
        return node;
      }
    }
  }

  std::vector<Chunk> chunks_;
  const SourceMap& map_;
  size_t chunk_ = 0;
  const std::vector<Token>* toks_ = nullptr;
  size_t tok_ = 0;
  int nesting_ = 0;
};

// ------------------------------------------------------------------------------------------
// Evaluator.

enum class Flow { kNormal, kBreak, kContinue };

class Evaluator {
 public:
  Evaluator(const SourceMap& map) : map_(map) {}

  absl::Status Error(size_t pos, std::string_view message) const {
    return map_.Error(pos, message);
  }

  void PushScope() { scopes_.emplace_back(); }
  void PopScope() { scopes_.pop_back(); }
  void Define(const std::string& name, Value v) { scopes_.back()[name] = std::move(v); }

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
  }

  absl::Status Exec(const Body& body, std::string* out, Flow* flow) {
    for (const auto& node : body) {
      RLVR_RETURN_IF_ERROR(ExecNode(*node, out, flow));
      if (*flow != Flow::kNormal) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Eval(const Expr& e);

  std::vector<std::map<std::string, Value>>& scopes() { return scopes_; }

  absl::StatusOr<Value> CallMacro(const Node& macro, std::vector<Value>& args, Kwargs& kwargs,
                                  size_t pos);

 private:
  absl::Status ExecNode(const Node& n, std::string* out, Flow* flow);
  absl::StatusOr<Value> Call(const Expr& e);
  absl::StatusOr<Value> CallMethod(const Value& obj, const std::string& name,
                                   std::vector<Value>& args, size_t pos);
  absl::StatusOr<Value> ApplyFilter(const std::string& name, Value input, std::vector<Value>& args,
                                    Kwargs& kwargs, size_t pos);
  absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& input,
                                 std::vector<Value>& args, size_t pos);
  absl::StatusOr<Value> Binary(const std::string& op, const Value& a, const Value& b, size_t pos);
  absl::StatusOr<bool> Compare(const std::string& op, const Value& a, const Value& b, size_t pos);
  absl::StatusOr<std::vector<Value>> Iterate(const Value& v, size_t pos);
  absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name, size_t pos);
  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key, size_t pos);
  absl::Status EvalArgs(const Expr& e, size_t first, std::vector<Value>* args, Kwargs* kwargs);

  const SourceMap& map_;
  std::vector<std::map<std::string, Value>> scopes_;
  int depth_ = 0;
  int64_t steps_ = 0;
};

absl::StatusOr<std::vector<Value>> Evaluator::Iterate(const Value& v, size_t pos) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return std::vector<Value>{};
    case Value::Kind::kList:
      return *v.list;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, val] : v.dict->items) keys.push_back(Value::Str(k));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (auto& c : Chars(v.s)) chars.push_back(Value::Str(c));
      return chars;
    }
    default:
      return Error(pos, absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

absl::StatusOr<Value> Evaluator::GetAttr(const Value& obj, const std::string& name, size_t pos) {
  if (obj.IsUndefined()) return Error(pos, obj.s);
  if (obj.kind == Value::Kind::kDict) {
    if (const Value* v = obj.dict->Find(name)) return *v;
    return Value::Undefined(absl::StrCat("'dict object' has no attribute '", name, "'"));
  }
  return Value::Undefined(
      absl::StrCat("'", TypeName(obj), " object' has no attribute '", name, "'"));
}

absl::StatusOr<Value> Evaluator::GetItem(const Value& obj, const Value& key, size_t pos) {
  if (obj.IsUndefined()) return Error(pos, obj.s);
  if (obj.kind == Value::Kind::kDict) {
    if (key.kind == Value::Kind::kString) {
      if (const Value* v = obj.dict->Find(key.s)) return *v;
    }
    return Value::Undefined(absl::StrCat("'dict object' has no attribute ", PyRepr(key)));
  }
  if (obj.kind == Value::Kind::kList || obj.kind == Value::Kind::kString) {
    if (key.kind != Value::Kind::kInt && key.kind != Value::Kind::kBool) {
      return Value::Undefined(
          absl::StrCat("'", TypeName(obj), " object' has no attribute ", PyRepr(key)));
    }
    std::vector<std::string> chars;
    int64_t n;
    if (obj.kind == Value::Kind::kList) {
      n = static_cast<int64_t>(obj.list->size());
    } else {
      chars = Chars(obj.s);
      n = static_cast<int64_t>(chars.size());
    }
    int64_t idx = key.AsInt();
    if (idx < 0) idx += n;
    if (idx < 0 || idx >= n) {
      return Value::Undefined(absl::StrCat(TypeName(obj), " index out of range"));
    }
    if (obj.kind == Value::Kind::kList) return (*obj.list)[idx];
    return Value::Str(chars[idx]);
  }
  return Value::Undefined(absl::StrCat("'", TypeName(obj), " object' is not subscriptable"));
}

absl::StatusOr<bool> Evaluator::Compare(const std::string& op, const Value& a, const Value& b,
                                        size_t pos) {
  if (op == "==") return Equal(a, b);
  if (op == "!=") return !Equal(a, b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.kind == Value::Kind::kString) {
      if (a.kind != Value::Kind::kString) {
        return Error(
            pos, absl::StrCat("'in <string>' requires string as left operand, not ", TypeName(a)));
      }
      found = b.s.find(a.s) != std::string::npos;
    } else if (b.kind == Value::Kind::kList) {
      for (const Value& v : *b.list) found = found || Equal(a, v);
    } else if (b.kind == Value::Kind::kDict) {
      found = a.kind == Value::Kind::kString && b.dict->Find(a.s) != nullptr;
    } else if (!b.IsUndefined()) {
      return Error(pos, absl::StrCat("argument of type '", TypeName(b), "' is not iterable"));
    }
    return op == "in" ? found : !found;
  }
  int c;
  if (a.IsNumber() && b.IsNumber()) {
    const double x = a.AsDouble(), y = b.AsDouble();
    c = x < y ? -1 : x > y ? 1 : 0;
  } else if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
    c = a.s.compare(b.s);
  } else {
    return Error(pos, absl::StrCat("'", op, "' not supported between instances of '", TypeName(a),
                                   "' and '", TypeName(b), "'"));
  }
  if (op == "<") return c < 0;
  if (op == ">") return c > 0;
  if (op == "<=") return c <= 0;
  return c >= 0;
}

absl::StatusOr<Value> Evaluator::Binary(const std::string& op, const Value& a, const Value& b,
                                        size_t pos) {
  if (op == "~") return Value::Str(PyStr(a) + PyStr(b));
  const auto bad = [&]() {
    return Error(pos, absl::StrCat("unsupported operand type(s) for ", op, ": '", TypeName(a),
                                   "' and '", TypeName(b), "'"));
  };
  if (a.IsNumber() && b.IsNumber()) {
    const bool is_float = a.kind == Value::Kind::kFloat || b.kind == Value::Kind::kFloat;
    const int64_t x = a.AsInt(), y = b.AsInt();
    const double fx = a.AsDouble(), fy = b.AsDouble();
    if (op == "+") return is_float ? Value::Float(fx + fy) : Value::Int(x + y);
    if (op == "-") return is_float ? Value::Float(fx - fy) : Value::Int(x - y);
    if (op == "*") return is_float ? Value::Float(fx * fy) : Value::Int(x * y);
    if (op == "/") {
      if (fy == 0) return Error(pos, "division by zero");
      return Value::Float(fx / fy);
    }
    if (op == "//" || op == "%") {
      if (fy == 0) return Error(pos, "integer division or modulo by zero");
      if (is_float) {
        const double q = std::floor(fx / fy);
        return op == "//" ? Value::Float(q) : Value::Float(fx - q * fy);
      }
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return op == "//" ? Value::Int(q) : Value::Int(x - q * y);
    }
    if (op == "**") {
      if (!is_float && y >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < y; ++k) r *= x;
        return Value::Int(r);
      }
      return Value::Float(std::pow(fx, fy));
    }
    return bad();
  }
  if (op == "+") {
    if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
      return Value::Str(a.s + b.s);
    }
    if (a.kind == Value::Kind::kList && b.kind == Value::Kind::kList) {
      ValueList items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return Value::List(std::move(items));
    }
  }
  if (op == "*") {
    const Value* seq = a.kind == Value::Kind::kString || a.kind == Value::Kind::kList ? &a : &b;
    const Value* count = seq == &a ? &b : &a;
    if ((seq->kind == Value::Kind::kString || seq->kind == Value::Kind::kList) &&
        (count->kind == Value::Kind::kInt || count->kind == Value::Kind::kBool)) {
      const int64_t times = std::max<int64_t>(0, count->AsInt());
      const size_t unit = seq->kind == Value::Kind::kString ? seq->s.size() : seq->list->size();
      if (times > 0 && unit > 0 && static_cast<uint64_t>(times) > kMaxOutputBytes / unit) {
        return Error(pos, "repetition result is too large");
      }
      if (seq->kind == Value::Kind::kString) {
        std::string s;
        for (int64_t k = 0; k < times; ++k) s += seq->s;
        return Value::Str(std::move(s));
      }
      ValueList items;
      for (int64_t k = 0; k < times; ++k)
        items.insert(items.end(), seq->list->begin(), seq->list->end());
      return Value::List(std::move(items));
    }
  }
  return bad();
}

absl::Status Evaluator::EvalArgs(const Expr& e, size_t first, std::vector<Value>* args,
                                 Kwargs* kwargs) {
  const size_t num_kw = e.kw_names.size();
  const size_t num_pos = e.args.size() - first - num_kw;
  for (size_t k = 0; k < num_pos; ++k) {
    RLVR_ASSIGN_OR_RETURN(Value v, Eval(*e.args[first + k]));
    args->push_back(std::move(v));
  }
  for (size_t k = 0; k < num_kw; ++k) {
    RLVR_ASSIGN_OR_RETURN(Value v, Eval(*e.args[first + num_pos + k]));
    kwargs->emplace_back(e.kw_names[k], std::move(v));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::Eval(const Expr& e) {
  if (++steps_ > kMaxSteps) return Error(e.pos, "template evaluation takes too many steps");
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal;
    case Expr::Kind::kName:
      return Lookup(e.name);
    case Expr::Kind::kList: {
      ValueList items;
      for (const auto& a : e.args) {
        RLVR_ASSIGN_OR_RETURN(Value v, Eval(*a));
        items.push_back(std::move(v));
      }
      Value list = Value::List(std::move(items));
      list.b = e.negated;
      return list;
    }
    case Expr::Kind::kDict: {
      auto d = std::make_shared<ValueDict>();
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        RLVR_ASSIGN_OR_RETURN(Value key, Eval(*e.args[k]));
        RLVR_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
        if (key.kind != Value::Kind::kString) {
          return Error(e.args[k]->pos, "only string keys are supported in dict literals");
        }
        d->Set(key.s, std::move(v));
      }
      return Value::Dict(std::move(d));
    }
    case Expr::Kind::kGetAttr: {
      RLVR_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      return GetAttr(obj, e.name, e.pos);
    }
    case Expr::Kind::kGetItem: {
      RLVR_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      RLVR_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
      return GetItem(obj, key, e.pos);
    }
    case Expr::Kind::kSlice: {
      RLVR_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      Value parts[3];
      for (int k = 0; k < 3; ++k) {
        if (e.args[k + 1] != nullptr) {
          RLVR_ASSIGN_OR_RETURN(parts[k], Eval(*e.args[k + 1]));
        }
      }
      if (parts[2].IsNumber() && parts[2].AsInt() == 0) {
        return Error(e.pos, "slice step cannot be zero");
      }
      if (obj.kind == Value::Kind::kList) {
        ValueList items;
        for (int64_t k :
             SliceIndices(static_cast<int64_t>(obj.list->size()), parts[0], parts[1], parts[2])) {
          items.push_back((*obj.list)[k]);
        }
        return Value::List(std::move(items));
      }
      if (obj.kind == Value::Kind::kString) {
        std::vector<std::string> chars = Chars(obj.s);
        std::string s;
        for (int64_t k :
             SliceIndices(static_cast<int64_t>(chars.size()), parts[0], parts[1], parts[2])) {
          s += chars[k];
        }
        return Value::Str(std::move(s));
      }
      if (obj.IsUndefined()) return Error(e.pos, obj.s);
      return Error(e.pos, absl::StrCat("'", TypeName(obj), "' object is not subscriptable"));
    }
    case Expr::Kind::kCall:
      return Call(e);
    case Expr::Kind::kFilter: {
      RLVR_ASSIGN_OR_RETURN(Value input, Eval(*e.args[0]));
      std::vector<Value> args;
      Kwargs kwargs;
      RLVR_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
      return ApplyFilter(e.name, std::move(input), args, kwargs, e.pos);
    }
    case Expr::Kind::kTest: {
      RLVR_ASSIGN_OR_RETURN(Value input, Eval(*e.args[0]));
      std::vector<Value> args;
      Kwargs kwargs;
      RLVR_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
      RLVR_ASSIGN_OR_RETURN(bool r, ApplyTest(e.name, input, args, e.pos));
      return Value::Bool(e.negated ? !r : r);
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      RLVR_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
      if (!v.IsNumber()) {
        return Error(e.pos,
                     absl::StrCat("bad operand type for unary ",
                                  e.kind == Expr::Kind::kNeg ? "-" : "+", ": '", TypeName(v), "'"));
      }
      if (e.kind == Expr::Kind::kPos) return v;
      return v.kind == Value::Kind::kFloat ? Value::Float(-v.f) : Value::Int(-v.AsInt());
    }
    case Expr::Kind::kNot: {
      RLVR_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
      return Value::Bool(!Truthy(v));
    }
    case Expr::Kind::kAnd: {
      RLVR_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      if (!Truthy(a)) return a;
      return Eval(*e.args[1]);
    }
    case Expr::Kind::kOr: {
      RLVR_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      if (Truthy(a)) return a;
      return Eval(*e.args[1]);
    }
    case Expr::Kind::kBinary: {
      RLVR_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      RLVR_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
      return Binary(e.name, a, b, e.pos);
    }
    case Expr::Kind::kCompare: {
      RLVR_ASSIGN_OR_RETURN(Value left, Eval(*e.args[0]));
      for (size_t k = 0; k < e.ops.size(); ++k) {
        RLVR_ASSIGN_OR_RETURN(Value right, Eval(*e.args[k + 1]));
        RLVR_ASSIGN_OR_RETURN(bool r, Compare(e.ops[k], left, right, e.args[k + 1]->pos));
        if (!r) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case Expr::Kind::kCond: {
      RLVR_ASSIGN_OR_RETURN(Value cond, Eval(*e.args[1]));
      if (Truthy(cond)) return Eval(*e.args[0]);
      if (e.args[2] == nullptr) return Value::Undefined("the inline if expression has no else");
      return Eval(*e.args[2]);
    }
  }
  return Error(e.pos, "internal: unknown expression");
}

absl::StatusOr<Value> Evaluator::Call(const Expr& e) {
  std::vector<Value> args;
  Kwargs kwargs;
  const Expr& callee = *e.args[0];
  if (callee.kind == Expr::Kind::kGetAttr) {
    RLVR_ASSIGN_OR_RETURN(Value obj, Eval(*callee.args[0]));
    if (obj.kind == Value::Kind::kString || obj.kind == Value::Kind::kList ||
        (obj.kind == Value::Kind::kDict && !obj.dict->is_namespace)) {
      RLVR_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
      if (!kwargs.empty()) {
        return Error(e.pos, absl::StrCat("keyword arguments to ", TypeName(obj), ".", callee.name,
                                         "() are not supported"));
      }
      return CallMethod(obj, callee.name, args, callee.pos);
    }
    RLVR_ASSIGN_OR_RETURN(Value fn, GetAttr(obj, callee.name, callee.pos));
    if (fn.kind != Value::Kind::kCallable) {
      return Error(e.pos, absl::StrCat("'", callee.name, "' is not callable"));
    }
    RLVR_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
    auto r = (*fn.fn)(*this, args, kwargs);
    if (!r.ok()) return Error(e.pos, std::string(r.status().message()));
    return r;
  }
  RLVR_ASSIGN_OR_RETURN(Value fn, Eval(callee));
  if (fn.kind != Value::Kind::kCallable) {
    if (fn.IsUndefined()) return Error(e.pos, fn.s);
    return Error(e.pos, absl::StrCat("'", TypeName(fn), "' object is not callable"));
  }
  RLVR_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
  auto r = (*fn.fn)(*this, args, kwargs);
  // Errors from macros already carry a location (fn.b); builtins get the call's.
  if (!r.ok() && !fn.b) return Error(e.pos, std::string(r.status().message()));
  return r;
}

absl::StatusOr<Value> Evaluator::CallMethod(const Value& obj, const std::string& name,
                                            std::vector<Value>& args, size_t pos) {
  const auto arg_str = [&](size_t k) -> const std::string* {
    return k < args.size() && args[k].kind == Value::Kind::kString ? &args[k].s : nullptr;
  };
  const auto need = [&](size_t lo, size_t hi) -> absl::Status {
    if (args.size() < lo || args.size() > hi) {
      return Error(pos, absl::StrCat(name, "() takes ", lo, hi != lo ? absl::StrCat("..", hi) : "",
                                     " arguments (", args.size(), " given)"));
    }
    return absl::OkStatus();
  };
  if (obj.kind == Value::Kind::kString) {
    const std::string& s = obj.s;
    if (name == "startswith" || name == "endswith") {
      RLVR_RETURN_IF_ERROR(need(1, 1));
      std::vector<std::string> options;
      if (args[0].kind == Value::Kind::kString) {
        options.push_back(args[0].s);
      } else if (args[0].kind == Value::Kind::kList) {
        for (const Value& v : *args[0].list) options.push_back(PyStr(v));
      } else {
        return Error(pos, absl::StrCat(name, "() argument must be str or a tuple of str"));
      }
      for (const std::string& o : options) {
        if (o.size() <= s.size() &&
            (name == "startswith" ? s.compare(0, o.size(), o) == 0
                                  : s.compare(s.size() - o.size(), o.size(), o) == 0)) {
          return Value::Bool(true);
        }
      }
      return Value::Bool(false);
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      RLVR_RETURN_IF_ERROR(need(0, 1));
      return Value::Str(PyStrip(s, arg_str(0), name != "rstrip", name != "lstrip"));
    }
    if (name == "split" || name == "rsplit") {
      RLVR_RETURN_IF_ERROR(need(0, 2));
      const std::string* sep = arg_str(0);
      if (sep != nullptr && sep->empty()) return Error(pos, "empty separator");
      const int64_t maxsplit = args.size() > 1 ? args[1].AsInt() : -1;
      std::vector<std::string> parts;
      if (name == "rsplit" && maxsplit >= 0 && sep != nullptr) {
        std::string rest = s;
        std::vector<std::string> rev;
        while (static_cast<int64_t>(rev.size()) < maxsplit) {
          const size_t at = rest.rfind(*sep);
          if (at == std::string::npos) break;
          rev.push_back(rest.substr(at + sep->size()));
          rest.resize(at);
        }
        parts.push_back(rest);
        parts.insert(parts.end(), rev.rbegin(), rev.rend());
      } else {
        parts = PySplit(s, sep, maxsplit);
      }
      ValueList items;
      for (auto& p : parts) items.push_back(Value::Str(std::move(p)));
      return Value::List(std::move(items));
    }
    if (name == "splitlines") {
      ValueList items;
      size_t start = 0;
      for (size_t k = 0; k < s.size(); ++k) {
        if (s[k] == '\n' || s[k] == '\r') {
          items.push_back(Value::Str(s.substr(start, k - start)));
          if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
          start = k + 1;
        }
      }
      if (start < s.size()) items.push_back(Value::Str(s.substr(start)));
      return Value::List(std::move(items));
    }
    if (name == "lower" || name == "upper" || name == "title" || name == "capitalize") {
      return Value::Str(MapCase(s, name));
    }
    if (name == "replace") {
      RLVR_RETURN_IF_ERROR(need(2, 3));
      if (arg_str(0) == nullptr || arg_str(1) == nullptr) {
        return Error(pos, "replace() arguments must be strings");
      }
      int64_t count = args.size() > 2 ? args[2].AsInt() : -1;
      const std::string& from = args[0].s;
      const std::string& to = args[1].s;
      std::string r;
      if (from.empty()) return Value::Str(s);
      size_t start = 0;
      while (count != 0) {
        const size_t at = s.find(from, start);
        if (at == std::string::npos) break;
        r += s.substr(start, at - start) + to;
        start = at + from.size();
        if (count > 0) --count;
      }
      r += s.substr(start);
      return Value::Str(std::move(r));
    }
    if (name == "find" || name == "count") {
      RLVR_RETURN_IF_ERROR(need(1, 1));
      if (arg_str(0) == nullptr) return Error(pos, absl::StrCat(name, "() needs a string"));
      if (name == "find") {
        const size_t at = s.find(args[0].s);
        if (at == std::string::npos) return Value::Int(-1);
        return Value::Int(static_cast<int64_t>(Chars(s.substr(0, at)).size()));
      }
      if (args[0].s.empty()) return Value::Int(static_cast<int64_t>(Chars(s).size()) + 1);
      int64_t n = 0;
      for (size_t at = s.find(args[0].s); at != std::string::npos;
           at = s.find(args[0].s, at + args[0].s.size())) {
        ++n;
      }
      return Value::Int(n);
    }
    if (name == "join") {
      RLVR_RETURN_IF_ERROR(need(1, 1));
      RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(args[0], pos));
      std::string r;
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) r += s;
        r += PyStr(items[k]);
      }
      return Value::Str(std::move(r));
    }
    if (name == "isdigit" || name == "isalpha" || name == "isspace") {
      if (s.empty()) return Value::Bool(false);
      for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        const bool ok = name == "isdigit"   ? std::isdigit(u) != 0
                        : name == "isalpha" ? std::isalpha(u) != 0
                                            : std::isspace(u) != 0;
        if (!ok) return Value::Bool(false);
      }
      return Value::Bool(true);
    }
  } else if (obj.kind == Value::Kind::kDict) {
    if (name == "items" || name == "keys" || name == "values") {
      ValueList items;
      for (const auto& [k, v] : obj.dict->items) {
        if (name == "items") {
          Value pair = Value::List({Value::Str(k), v});
          pair.b = true;
          items.push_back(std::move(pair));
        } else {
          items.push_back(name == "keys" ? Value::Str(k) : v);
        }
      }
      return Value::List(std::move(items));
    }
    if (name == "get") {
      RLVR_RETURN_IF_ERROR(need(1, 2));
      if (args[0].kind == Value::Kind::kString) {
        if (const Value* v = obj.dict->Find(args[0].s)) return *v;
      }
      return args.size() > 1 ? args[1] : Value::None();
    }
    // A dict's key holding a callable, e.g. a namespace passed in as a dict.
    if (const Value* v = obj.dict->Find(name); v != nullptr && v->kind == Value::Kind::kCallable) {
      Kwargs none;
      return (*v->fn)(*this, args, none);
    }
  }
  return Error(pos, absl::StrCat("'", TypeName(obj), "' object has no method '", name, "'"));
}

absl::StatusOr<bool> Evaluator::ApplyTest(const std::string& name, const Value& v,
                                          std::vector<Value>& args, size_t pos) {
  using K = Value::Kind;
  if (name == "defined") return !v.IsUndefined();
  if (name == "undefined") return v.IsUndefined();
  if (name == "none") return v.kind == K::kNone;
  if (name == "string") return v.kind == K::kString;
  if (name == "number") return v.kind == K::kInt || v.kind == K::kFloat;
  if (name == "integer") return v.kind == K::kInt;
  if (name == "float") return v.kind == K::kFloat;
  if (name == "boolean") return v.kind == K::kBool;
  if (name == "true") return v.kind == K::kBool && v.b;
  if (name == "false") return v.kind == K::kBool && !v.b;
  if (name == "mapping") return v.kind == K::kDict;
  if (name == "iterable") {
    return v.kind == K::kString || v.kind == K::kList || v.kind == K::kDict || v.IsUndefined();
  }
  if (name == "sequence") {
    return v.kind == K::kString || v.kind == K::kList || v.kind == K::kDict;
  }
  if (name == "callable") return v.kind == K::kCallable;
  if (name == "lower" || name == "upper") {
    if (v.kind != K::kString) return false;
    for (char c : v.s) {
      if (name == "lower" ? std::isupper(static_cast<unsigned char>(c))
                          : std::islower(static_cast<unsigned char>(c))) {
        return false;
      }
    }
    return true;
  }
  if (name == "even" || name == "odd" || name == "divisibleby") {
    if (!v.IsNumber()) return Error(pos, absl::StrCat("test '", name, "' needs a number"));
    const int64_t x = v.AsInt();
    if (name == "even") return x % 2 == 0;
    if (name == "odd") return x % 2 != 0;
    if (args.empty() || !args[0].IsNumber() || args[0].AsInt() == 0) {
      return Error(pos, "divisibleby needs a non-zero number");
    }
    return x % args[0].AsInt() == 0;
  }
  static const std::map<std::string, std::string> kCompareTests = {
      {"eq", "=="}, {"equalto", "=="}, {"==", "=="},      {"ne", "!="},
      {"!=", "!="}, {"lt", "<"},       {"lessthan", "<"}, {"<", "<"},
      {"le", "<="}, {"<=", "<="},      {"gt", ">"},       {"greaterthan", ">"},
      {">", ">"},   {"ge", ">="},      {">=", ">="},      {"in", "in"}};
  if (auto it = kCompareTests.find(name); it != kCompareTests.end()) {
    if (args.size() != 1) return Error(pos, absl::StrCat("test '", name, "' takes one argument"));
    return Compare(it->second, v, args[0], pos);
  }
  if (name == "sameas") {
    if (args.size() != 1) return Error(pos, "test 'sameas' takes one argument");
    const Value& o = args[0];
    if (v.kind != o.kind) return false;
    if (v.kind == K::kNone || v.kind == K::kUndefined) return true;
    if (v.kind == K::kBool) return v.b == o.b;
    if (v.kind == K::kList) return v.list == o.list;
    if (v.kind == K::kDict) return v.dict == o.dict;
    return Equal(v, o);
  }
  return Error(pos, absl::StrCat("unknown test '", name, "'"));
}

absl::StatusOr<Value> Evaluator::ApplyFilter(const std::string& name, Value v,
                                             std::vector<Value>& args, Kwargs& kwargs, size_t pos) {
  using K = Value::Kind;
  const auto kwarg = [&](const char* key, size_t position) -> const Value* {
    for (const auto& [k, val] : kwargs) {
      if (k == key) return &val;
    }
    return position < args.size() ? &args[position] : nullptr;
  };
  if (name == "safe" || name == "e" || name == "escape" || name == "forceescape") {
    if (name != "safe") return Error(pos, "HTML escaping is not supported");
    return v;
  }
  if (name == "default" || name == "d") {
    const Value* dflt = kwarg("default_value", 0);
    const Value* boolean = kwarg("boolean", 1);
    const bool use_default =
        v.IsUndefined() || (boolean != nullptr && Truthy(*boolean) && !Truthy(v));
    if (use_default) return dflt != nullptr ? *dflt : Value::Str("");
    return v;
  }
  if (v.IsUndefined() && name != "length" && name != "count" && name != "string" &&
      name != "list" && name != "tojson") {
    return Error(pos, v.s);
  }
  if (name == "trim") {
    if (v.kind != K::kString) v = Value::Str(PyStr(v));
    const Value* chars = kwarg("chars", 0);
    const std::string* cs = chars != nullptr && chars->kind == K::kString ? &chars->s : nullptr;
    return Value::Str(PyStrip(v.s, cs, true, true));
  }
  if (name == "tojson") {
    if (v.IsUndefined()) return Error(pos, "Object of type Undefined is not JSON serializable");
    const Value* indent = kwarg("indent", 0);
    const Value* sort = kwarg("sort_keys", 99);
    std::string out;
    const absl::Status s =
        ToJson(v, indent != nullptr && indent->IsNumber() ? static_cast<int>(indent->AsInt()) : -1,
               sort != nullptr && Truthy(*sort), 0, &out);
    if (!s.ok()) return Error(pos, std::string(s.message()));
    return Value::Str(std::move(out));
  }
  if (name == "length" || name == "count") {
    switch (v.kind) {
      case K::kUndefined:
        return Value::Int(0);
      case K::kString:
        return Value::Int(static_cast<int64_t>(Chars(v.s).size()));
      case K::kList:
        return Value::Int(static_cast<int64_t>(v.list->size()));
      case K::kDict:
        return Value::Int(static_cast<int64_t>(v.dict->items.size()));
      default:
        return Error(pos, absl::StrCat("object of type '", TypeName(v), "' has no len()"));
    }
  }
  if (name == "string") return Value::Str(PyStr(v));
  if (name == "items") {
    if (v.kind != K::kDict) return Error(pos, "items filter needs a mapping");
    std::vector<Value> none;
    return CallMethod(v, "items", none, pos);
  }
  if (name == "keys" || name == "values") {
    if (v.kind != K::kDict) return Error(pos, absl::StrCat(name, " filter needs a mapping"));
    std::vector<Value> none;
    return CallMethod(v, name, none, pos);
  }
  if (name == "lower" || name == "upper" || name == "capitalize" || name == "title") {
    std::vector<Value> none;
    return CallMethod(Value::Str(PyStr(v)), name, none, pos);
  }
  if (name == "replace") {
    return CallMethod(Value::Str(PyStr(v)), "replace", args, pos);
  }
  if (name == "list") {
    RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos));
    return Value::List(std::move(items));
  }
  if (name == "first" || name == "last") {
    RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos));
    if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (v.kind == K::kString) {
      std::vector<std::string> cs = Chars(v.s);
      std::string r;
      for (auto it = cs.rbegin(); it != cs.rend(); ++it) r += *it;
      return Value::Str(std::move(r));
    }
    RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos));
    std::reverse(items.begin(), items.end());
    return Value::List(std::move(items));
  }
  if (name == "join") {
    RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos));
    const Value* sep = kwarg("d", 0);
    const Value* attribute = kwarg("attribute", 1);
    std::string r;
    for (size_t k = 0; k < items.size(); ++k) {
      if (k && sep != nullptr) r += PyStr(*sep);
      if (attribute != nullptr) {
        RLVR_ASSIGN_OR_RETURN(Value a, GetAttr(items[k], PyStr(*attribute), pos));
        r += PyStr(a);
      } else {
        r += PyStr(items[k]);
      }
    }
    return Value::Str(std::move(r));
  }
  if (name == "int") {
    if (v.kind == K::kFloat) return Value::Int(static_cast<int64_t>(v.f));
    if (v.IsNumber()) return Value::Int(v.AsInt());
    if (v.kind == K::kString) {
      const std::string t = PyStrip(v.s, nullptr, true, true);
      char* end = nullptr;
      const long long x = std::strtoll(t.c_str(), &end, 10);
      if (!t.empty() && end == t.c_str() + t.size()) return Value::Int(x);
      const double d = std::strtod(t.c_str(), &end);
      if (!t.empty() && end == t.c_str() + t.size()) return Value::Int(static_cast<int64_t>(d));
    }
    const Value* dflt = kwarg("default", 0);
    return dflt != nullptr ? *dflt : Value::Int(0);
  }
  if (name == "float") {
    if (v.IsNumber()) return Value::Float(v.AsDouble());
    if (v.kind == K::kString) {
      const std::string t = PyStrip(v.s, nullptr, true, true);
      char* end = nullptr;
      const double d = std::strtod(t.c_str(), &end);
      if (!t.empty() && end == t.c_str() + t.size()) return Value::Float(d);
    }
    const Value* dflt = kwarg("default", 0);
    return dflt != nullptr ? *dflt : Value::Float(0);
  }
  if (name == "abs") {
    if (v.kind == K::kFloat) return Value::Float(std::fabs(v.f));
    if (v.IsNumber()) return Value::Int(std::llabs(v.AsInt()));
    return Error(pos, "abs needs a number");
  }
  if (name == "round") {
    if (!v.IsNumber()) return Error(pos, "round needs a number");
    const Value* precision = kwarg("precision", 0);
    const double scale = std::pow(10.0, precision != nullptr ? precision->AsInt() : 0);
    return Value::Float(std::nearbyint(v.AsDouble() * scale) / scale);
  }
  if (name == "sum" || name == "min" || name == "max" || name == "sort" || name == "unique") {
    RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos));
    const Value* attribute = kwarg("attribute", name == "sort" ? 2 : 99);
    std::vector<Value> keys;
    for (const Value& item : items) {
      if (attribute != nullptr) {
        RLVR_ASSIGN_OR_RETURN(Value a, GetAttr(item, PyStr(*attribute), pos));
        keys.push_back(a);
      } else {
        keys.push_back(item);
      }
    }
    if (name == "sum") {
      Value total = Value::Int(0);
      for (const Value& k : keys) {
        RLVR_ASSIGN_OR_RETURN(total, Binary("+", total, k, pos));
      }
      return total;
    }
    if (name == "unique") {
      std::vector<Value> out;
      for (const Value& item : items) {
        bool seen = false;
        for (const Value& o : out) seen = seen || Equal(o, item);
        if (!seen) out.push_back(item);
      }
      return Value::List(std::move(out));
    }
    std::vector<size_t> order(items.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    absl::Status status;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      auto lt = Compare("<", keys[a], keys[b], pos);
      if (!lt.ok()) {
        status = lt.status();
        return false;
      }
      return *lt;
    });
    RLVR_RETURN_IF_ERROR(status);
    if (name == "min") {
      if (items.empty()) return Value::Undefined("min of an empty sequence");
      return items[order.front()];
    }
    if (name == "max") {
      if (items.empty()) return Value::Undefined("max of an empty sequence");
      // Python's max returns the first of equal maxima.
      size_t best = order.back();
      for (size_t k = 0; k < items.size(); ++k) {
        if (Equal(keys[k], keys[best])) {
          best = k;
          break;
        }
      }
      return items[best];
    }
    const Value* reverse = kwarg("reverse", 0);
    std::vector<Value> sorted;
    for (size_t k : order) sorted.push_back(items[k]);
    if (reverse != nullptr && Truthy(*reverse)) {
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        auto gt = Compare(">", keys[a], keys[b], pos);
        return gt.ok() && *gt;
      });
      sorted.clear();
      for (size_t k : order) sorted.push_back(items[k]);
    }
    return Value::List(std::move(sorted));
  }
  if (name == "map" || name == "select" || name == "reject" || name == "selectattr" ||
      name == "rejectattr") {
    RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos));
    std::vector<Value> out;
    if (name == "map") {
      const Value* attribute = kwarg("attribute", 99);
      for (Value& item : items) {
        if (attribute != nullptr) {
          RLVR_ASSIGN_OR_RETURN(Value a, GetAttr(item, PyStr(*attribute), pos));
          if (a.IsUndefined()) {
            if (const Value* d = kwarg("default", 99)) a = *d;
          }
          out.push_back(a);
        } else {
          if (args.empty() || args[0].kind != K::kString) {
            return Error(pos, "map needs a filter name or attribute=");
          }
          std::vector<Value> rest(args.begin() + 1, args.end());
          Kwargs none;
          RLVR_ASSIGN_OR_RETURN(Value r, ApplyFilter(args[0].s, item, rest, none, pos));
          out.push_back(r);
        }
      }
      return Value::List(std::move(out));
    }
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_if = name == "select" || name == "selectattr";
    size_t test_arg = by_attr ? 1 : 0;
    for (Value& item : items) {
      Value subject = item;
      if (by_attr) {
        if (args.empty()) return Error(pos, absl::StrCat(name, " needs an attribute name"));
        RLVR_ASSIGN_OR_RETURN(subject, GetAttr(item, PyStr(args[0]), pos));
      }
      bool r;
      if (args.size() > test_arg) {
        std::vector<Value> rest(args.begin() + test_arg + 1, args.end());
        RLVR_ASSIGN_OR_RETURN(r, ApplyTest(PyStr(args[test_arg]), subject, rest, pos));
      } else {
        r = Truthy(subject);
      }
      if (r == keep_if) out.push_back(item);
    }
    return Value::List(std::move(out));
  }
  if (name == "indent") {
    const Value* width_v = kwarg("width", 0);
    const Value* first_v = kwarg("first", 1);
    const Value* blank_v = kwarg("blank", 2);
    const std::string pad = width_v != nullptr && width_v->kind == K::kString
                                ? width_v->s
                                : std::string(width_v != nullptr ? width_v->AsInt() : 4, ' ');
    const std::string s = PyStr(v);
    std::string out;
    size_t start = 0;
    bool first_line = true;
    while (start <= s.size()) {
      size_t nl = s.find('\n', start);
      const std::string line =
          s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      const bool blank = line.find_first_not_of(" \t") == std::string::npos;
      if ((!first_line || (first_v != nullptr && Truthy(*first_v))) &&
          (!blank || (blank_v != nullptr && Truthy(*blank_v)))) {
        out += pad;
      }
      out += line;
      if (nl == std::string::npos) break;
      out += '\n';
      start = nl + 1;
      first_line = false;
    }
    return Value::Str(std::move(out));
  }
  return Error(pos, absl::StrCat("unknown filter '", name, "'"));
}

absl::StatusOr<Value> Evaluator::CallMacro(const Node& macro, std::vector<Value>& args,
                                           Kwargs& kwargs, size_t pos) {
  if (args.size() > macro.targets.size()) {
    return Error(pos, absl::StrCat("macro '", macro.text, "' takes ", macro.targets.size(),
                                   " arguments (", args.size(), " given)"));
  }
  if (++depth_ > 64) return Error(pos, "macro recursion too deep");
  // Macros see the globals and the template's top level, not the caller's loop variables.
  std::vector<std::map<std::string, Value>> saved;
  saved.swap(scopes_);
  scopes_.push_back(saved[0]);
  if (saved.size() > 1) scopes_.push_back(saved[1]);
  PushScope();
  absl::Status status;
  for (size_t k = 0; k < macro.targets.size() && status.ok(); ++k) {
    Value v = Value::Undefined(absl::StrCat("'", macro.targets[k], "' is undefined"));
    if (k < args.size()) {
      v = args[k];
    } else if (macro.defaults[k] != nullptr) {
      auto d = Eval(*macro.defaults[k]);
      if (!d.ok())
        status = d.status();
      else
        v = *d;
    }
    for (const auto& [name, val] : kwargs) {
      if (name == macro.targets[k]) v = val;
    }
    Define(macro.targets[k], v);
  }
  std::string out;
  Flow flow = Flow::kNormal;
  if (status.ok()) status = Exec(macro.body, &out, &flow);
  // Writes to the globals/top level inside the macro are dropped, as in Jinja.
  scopes_.swap(saved);
  --depth_;
  RLVR_RETURN_IF_ERROR(status);
  return Value::Str(std::move(out));
}

absl::Status Evaluator::ExecNode(const Node& n, std::string* out, Flow* flow) {
  if (++steps_ > kMaxSteps) return Error(n.pos, "template evaluation takes too many steps");
  if (out->size() > kMaxOutputBytes) return Error(n.pos, "template output is too large");
  switch (n.kind) {
    case Node::Kind::kText:
      *out += n.text;
      return absl::OkStatus();
    case Node::Kind::kOutput: {
      RLVR_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
      *out += PyStr(v);
      return absl::OkStatus();
    }
    case Node::Kind::kIf:
      for (const auto& [cond, body] : n.branches) {
        RLVR_ASSIGN_OR_RETURN(Value c, Eval(*cond));
        if (Truthy(c)) return Exec(body, out, flow);
      }
      return Exec(n.else_body, out, flow);
    case Node::Kind::kFor: {
      RLVR_ASSIGN_OR_RETURN(Value seq, Eval(*n.expr));
      RLVR_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq, n.expr->pos));
      const auto bind = [&](const Value& item) -> absl::Status {
        if (n.targets.size() == 1) {
          Define(n.targets[0], item);
          return absl::OkStatus();
        }
        RLVR_ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(item, n.pos));
        if (parts.size() != n.targets.size()) {
          return Error(n.pos, absl::StrCat("cannot unpack ", parts.size(), " values into ",
                                           n.targets.size(), " loop variables"));
        }
        for (size_t k = 0; k < parts.size(); ++k) Define(n.targets[k], parts[k]);
        return absl::OkStatus();
      };
      if (n.filter != nullptr) {
        std::vector<Value> kept;
        for (const Value& item : items) {
          PushScope();
          absl::Status s = bind(item);
          absl::StatusOr<Value> keep = s.ok() ? Eval(*n.filter) : absl::StatusOr<Value>(s);
          PopScope();
          RLVR_RETURN_IF_ERROR(keep.status());
          if (Truthy(*keep)) kept.push_back(item);
        }
        items.swap(kept);
      }
      if (items.empty()) return Exec(n.else_body, out, flow);
      const auto length = static_cast<int64_t>(items.size());
      for (int64_t k = 0; k < length; ++k) {
        PushScope();
        auto loop = std::make_shared<ValueDict>();
        loop->Set("index", Value::Int(k + 1));
        loop->Set("index0", Value::Int(k));
        loop->Set("revindex", Value::Int(length - k));
        loop->Set("revindex0", Value::Int(length - k - 1));
        loop->Set("first", Value::Bool(k == 0));
        loop->Set("last", Value::Bool(k == length - 1));
        loop->Set("length", Value::Int(length));
        loop->Set("depth", Value::Int(1));
        loop->Set("depth0", Value::Int(0));
        if (k > 0) loop->Set("previtem", items[k - 1]);
        if (k + 1 < length) loop->Set("nextitem", items[k + 1]);
        Define("loop", Value::Dict(loop));
        absl::Status s = bind(items[k]);
        Flow body_flow = Flow::kNormal;
        if (s.ok()) s = Exec(n.body, out, &body_flow);
        PopScope();
        RLVR_RETURN_IF_ERROR(s);
        if (body_flow == Flow::kBreak) break;
      }
      return absl::OkStatus();
    }
    case Node::Kind::kSet: {
      RLVR_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
      if (n.targets.size() == 1) {
        Define(n.targets[0], std::move(v));
        return absl::OkStatus();
      }
      Value ns = Lookup(n.targets[0]);
      if (ns.kind != Value::Kind::kDict || !ns.dict->is_namespace) {
        return Error(n.pos, absl::StrCat("cannot assign attribute on non-namespace object '",
                                         n.targets[0], "'"));
      }
      ns.dict->Set(n.targets[1], std::move(v));
      return absl::OkStatus();
    }
    case Node::Kind::kSetBlock: {
      std::string captured;
      Flow inner = Flow::kNormal;
      RLVR_RETURN_IF_ERROR(Exec(n.body, &captured, &inner));
      if (n.targets.size() == 1) {
        Define(n.targets[0], Value::Str(std::move(captured)));
        return absl::OkStatus();
      }
      Value ns = Lookup(n.targets[0]);
      if (ns.kind != Value::Kind::kDict || !ns.dict->is_namespace) {
        return Error(n.pos, "cannot assign attribute on non-namespace object");
      }
      ns.dict->Set(n.targets[1], Value::Str(std::move(captured)));
      return absl::OkStatus();
    }
    case Node::Kind::kMacro: {
      const Node* macro = &n;
      Value fn = Value::Function([macro](Evaluator& ev, std::vector<Value>& args,
                                         Kwargs& kwargs) -> absl::StatusOr<Value> {
        return ev.CallMacro(*macro, args, kwargs, macro->pos);
      });
      fn.b = true;  // errors from the body carry their own location
      Define(n.text, std::move(fn));
      return absl::OkStatus();
    }
    case Node::Kind::kBreak:
      *flow = Flow::kBreak;
      return absl::OkStatus();
    case Node::Kind::kContinue:
      *flow = Flow::kContinue;
      return absl::OkStatus();
    case Node::Kind::kBlock:
      return Exec(n.body, out, flow);
  }
  return absl::OkStatus();
}

std::map<std::string, Value> Globals() {
  std::map<std::string, Value> g;
  g["raise_exception"] =
      Value::Function([](Evaluator&, std::vector<Value>& args, Kwargs&) -> absl::StatusOr<Value> {
        return absl::InvalidArgumentError(
            absl::StrCat("raise_exception: ", args.empty() ? "" : PyStr(args[0])));
      });
  g["namespace"] = Value::Function(
      [](Evaluator&, std::vector<Value>& args, Kwargs& kwargs) -> absl::StatusOr<Value> {
        auto d = std::make_shared<ValueDict>();
        d->is_namespace = true;
        for (const Value& a : args) {
          if (a.kind != Value::Kind::kDict) {
            return absl::InvalidArgumentError("namespace() takes a mapping or keywords");
          }
          for (const auto& [k, v] : a.dict->items) d->Set(k, v);
        }
        for (const auto& [k, v] : kwargs) d->Set(k, v);
        return Value::Dict(std::move(d));
      });
  g["dict"] = Value::Function(
      [](Evaluator&, std::vector<Value>& args, Kwargs& kwargs) -> absl::StatusOr<Value> {
        auto d = std::make_shared<ValueDict>();
        for (const Value& a : args) {
          if (a.kind != Value::Kind::kDict)
            return absl::InvalidArgumentError("dict() needs a mapping");
          for (const auto& [k, v] : a.dict->items) d->Set(k, v);
        }
        for (const auto& [k, v] : kwargs) d->Set(k, v);
        return Value::Dict(std::move(d));
      });
  g["range"] =
      Value::Function([](Evaluator&, std::vector<Value>& args, Kwargs&) -> absl::StatusOr<Value> {
        int64_t start = 0, stop = 0, step = 1;
        for (const Value& a : args) {
          if (a.kind != Value::Kind::kInt && a.kind != Value::Kind::kBool) {
            return absl::InvalidArgumentError("range() arguments must be integers");
          }
        }
        if (args.size() == 1) {
          stop = args[0].AsInt();
        } else if (args.size() == 2 || args.size() == 3) {
          start = args[0].AsInt();
          stop = args[1].AsInt();
          if (args.size() == 3) step = args[2].AsInt();
        } else {
          return absl::InvalidArgumentError("range() takes 1 to 3 arguments");
        }
        if (step == 0) return absl::InvalidArgumentError("range() step must not be zero");
        ValueList items;
        for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
          if (items.size() > 1000000) return absl::InvalidArgumentError("range() too large");
          items.push_back(Value::Int(k));
        }
        return Value::List(std::move(items));
      });
  return g;
}

std::string NormalizeNewlines(std::string_view source) {
  // Jinja joins source.splitlines() with "\n": CRLF and CR become LF and one trailing newline
  // is dropped (keep_trailing_newline is off).
  std::string out;
  out.reserve(source.size());
  for (size_t k = 0; k < source.size(); ++k) {
    if (source[k] == '\r') {
      out += '\n';
      if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
    } else {
      out += source[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

struct ChatTemplate::Impl {
  std::string source;
  std::unique_ptr<SourceMap> map;
  Body body;
};

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(std::string_view source,
                                                                  std::string_view name) {
  auto impl = std::make_unique<Impl>();
  impl->source = NormalizeNewlines(source);
  impl->map = std::make_unique<SourceMap>(std::string(name), impl->source);
  Lexer lexer(impl->source, *impl->map);
  RLVR_ASSIGN_OR_RETURN(std::vector<Chunk> chunks, lexer.Run());
  Parser parser(std::move(chunks), *impl->map);
  RLVR_ASSIGN_OR_RETURN(impl->body, parser.ParseTemplate());
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(impl)));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& variables) const {
  if (!variables.is_object() && !variables.is_null()) {
    return absl::InvalidArgumentError("chat template variables must be a JSON object");
  }
  Evaluator ev(*impl_->map);
  ev.scopes().push_back(Globals());
  if (variables.is_object()) {
    for (auto it = variables.begin(); it != variables.end(); ++it) {
      ev.scopes().back()[it.key()] = FromJson(*it);
    }
  }
  ev.PushScope();
  std::string out;
  Flow flow = Flow::kNormal;
  RLVR_RETURN_IF_ERROR(ev.Exec(impl_->body, &out, &flow));
  return out;
}

absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& options) {
  OJson vars = options.extra.is_object() ? options.extra : OJson::object();
  OJson list = OJson::array();
  for (const ChatMessage& m : messages) {
    OJson msg = {{"role", m.role}, {"content", m.content}};
    if (m.reasoning_content.has_value()) msg["reasoning_content"] = *m.reasoning_content;
    list.push_back(std::move(msg));
  }
  vars["messages"] = std::move(list);
  vars["add_generation_prompt"] = options.add_generation_prompt;
  if (options.enable_thinking.has_value()) vars["enable_thinking"] = *options.enable_thinking;
  vars["bos_token"] = options.bos_token;
  vars["eos_token"] = options.eos_token;
  return chat_template.Render(vars);
}

namespace {

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TokenString(const OJson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

}  // namespace

absl::StatusOr<ModelChatTemplate> LoadModelChatTemplate(const std::string& dir) {
  ModelChatTemplate result;
  const std::string config_path = dir + "/tokenizer_config.json";
  OJson config;
  absl::StatusOr<std::string> config_text = ReadText(config_path);
  if (config_text.ok()) {
    config = OJson::parse(*config_text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": invalid JSON object"));
    }
    if (config.contains("bos_token")) result.bos_token = TokenString(config["bos_token"]);
    if (config.contains("eos_token")) result.eos_token = TokenString(config["eos_token"]);
  }
  const std::string jinja_path = dir + "/chat_template.jinja";
  absl::StatusOr<std::string> jinja = ReadText(jinja_path);
  if (jinja.ok()) {
    RLVR_ASSIGN_OR_RETURN(result.chat_template, ChatTemplate::Parse(*jinja, jinja_path));
    return result;
  }
  if (!config_text.ok() || !config.contains("chat_template")) {
    return absl::NotFoundError(absl::StrCat(
        dir, ": no chat_template.jinja and no chat_template in ", "tokenizer_config.json"));
  }
  const OJson& t = config["chat_template"];
  std::string source;
  if (t.is_string()) {
    source = t.get<std::string>();
  } else if (t.is_array()) {
    for (const OJson& entry : t) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        source = entry["template"].get<std::string>();
      }
    }
    if (source.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": chat_template: no entry named 'default'"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": chat_template: expected a string or a list"));
  }
  RLVR_ASSIGN_OR_RETURN(result.chat_template,
                        ChatTemplate::Parse(source, config_path + ":chat_template"));
  return result;
}

absl::StatusOr<std::shared_ptr<const ModelChatTemplate>> LoadModelChatTemplateIfAny(
    const std::string& dir) {
  absl::StatusOr<ModelChatTemplate> t = LoadModelChatTemplate(dir);
  if (t.ok()) return std::make_shared<const ModelChatTemplate>(std::move(*t));
  if (t.status().code() == absl::StatusCode::kNotFound) {
    return std::shared_ptr<const ModelChatTemplate>();
  }
  return t.status();
}

std::string R1ZeroPrompt(std::string_view question) {
  return absl::StrCat(
      "A conversation between User and Assistant. The user asks a question, and the Assistant "
      "solves it. The assistant first thinks about the reasoning process in the mind and then "
      "provides the user with the answer. The reasoning process and answer are enclosed within "
      "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
      "process here </think> <answer> answer here </answer>. User: ",
      Sv(question), ". Assistant:");
}

}  // namespace rlvr::policy
