#include "verifiers/math/parser.h"

#include <cstring>
#include <string>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace rlvr::verifiers::math {
namespace {

using Kids = absl::InlinedVector<int32_t, 8>;

enum class Tok : uint8_t { kEnd, kNumber, kLetter, kWord, kCommand, kChar, kText };

// Commands (and the Unicode characters that stand for them).
enum class Cmd : uint8_t {
  kUnknown,
  kFrac,
  kBinom,
  kSqrt,
  kFunc,  // aux = Func
  kPi,
  kInfty,
  kGreek,  // a variable named by the command
  kMul,
  kDiv,
  kPm,
  kMp,
  kRel,  // aux = Rel
  kCup,
  kText,   // \text{...} and friends: raw content
  kGroup,  // \boxed{...}, \mathbf{...}: parse the argument as math
  kDegree,
  kPercent,
  kLBrace,
  kRBrace,
  kLAngle,
  kRAngle,
  kVert,
  kBegin,
  kEnd,
  kEmptySet,
  kRowSep,  // "\\" inside a matrix
  kMinus,   // Unicode minus and dashes
  kNeg,     // \neg, \lnot: unsupported but named
};

struct CmdInfo {
  std::string_view name;
  Cmd cmd;
  uint8_t aux;
};

constexpr CmdInfo kCommands[] = {
    {"frac", Cmd::kFrac, 0},
    {"dfrac", Cmd::kFrac, 0},
    {"tfrac", Cmd::kFrac, 0},
    {"cfrac", Cmd::kFrac, 0},
    {"binom", Cmd::kBinom, 0},
    {"dbinom", Cmd::kBinom, 0},
    {"tbinom", Cmd::kBinom, 0},
    {"choose", Cmd::kUnknown, 0},
    {"sqrt", Cmd::kSqrt, 0},
    {"sin", Cmd::kFunc, uint8_t(Func::kSin)},
    {"cos", Cmd::kFunc, uint8_t(Func::kCos)},
    {"tan", Cmd::kFunc, uint8_t(Func::kTan)},
    {"cot", Cmd::kFunc, uint8_t(Func::kCot)},
    {"sec", Cmd::kFunc, uint8_t(Func::kSec)},
    {"csc", Cmd::kFunc, uint8_t(Func::kCsc)},
    {"arcsin", Cmd::kFunc, uint8_t(Func::kArcsin)},
    {"arccos", Cmd::kFunc, uint8_t(Func::kArccos)},
    {"arctan", Cmd::kFunc, uint8_t(Func::kArctan)},
    {"sinh", Cmd::kFunc, uint8_t(Func::kSinh)},
    {"cosh", Cmd::kFunc, uint8_t(Func::kCosh)},
    {"tanh", Cmd::kFunc, uint8_t(Func::kTanh)},
    {"ln", Cmd::kFunc, uint8_t(Func::kLn)},
    {"log", Cmd::kFunc, uint8_t(Func::kLn)},
    {"lg", Cmd::kFunc, uint8_t(Func::kLn)},
    {"exp", Cmd::kFunc, uint8_t(Func::kExp)},
    {"pi", Cmd::kPi, 0},
    {"infty", Cmd::kInfty, 0},
    {"infin", Cmd::kInfty, 0},
    {"cdot", Cmd::kMul, 0},
    {"times", Cmd::kMul, 0},
    {"ast", Cmd::kMul, 0},
    {"div", Cmd::kDiv, 0},
    {"pm", Cmd::kPm, 0},
    {"mp", Cmd::kMp, 0},
    {"le", Cmd::kRel, uint8_t(Rel::kLe)},
    {"leq", Cmd::kRel, uint8_t(Rel::kLe)},
    {"leqslant", Cmd::kRel, uint8_t(Rel::kLe)},
    {"ge", Cmd::kRel, uint8_t(Rel::kGe)},
    {"geq", Cmd::kRel, uint8_t(Rel::kGe)},
    {"geqslant", Cmd::kRel, uint8_t(Rel::kGe)},
    {"lt", Cmd::kRel, uint8_t(Rel::kLt)},
    {"gt", Cmd::kRel, uint8_t(Rel::kGt)},
    {"ne", Cmd::kRel, uint8_t(Rel::kNe)},
    {"neq", Cmd::kRel, uint8_t(Rel::kNe)},
    {"in", Cmd::kRel, uint8_t(Rel::kIn)},
    {"approx", Cmd::kRel, uint8_t(Rel::kEq)},
    {"cup", Cmd::kCup, 0},
    {"text", Cmd::kText, 0},
    {"textbf", Cmd::kText, 0},
    {"textit", Cmd::kText, 0},
    {"textrm", Cmd::kText, 0},
    {"textsf", Cmd::kText, 0},
    {"texttt", Cmd::kText, 0},
    {"textnormal", Cmd::kText, 0},
    {"mbox", Cmd::kText, 0},
    {"mathrm", Cmd::kText, 0},
    {"mathit", Cmd::kText, 0},
    {"mathsf", Cmd::kText, 0},
    {"mathtt", Cmd::kText, 0},
    {"operatorname", Cmd::kText, 0},
    {"hbox", Cmd::kText, 0},
    {"boxed", Cmd::kGroup, 0},
    {"fbox", Cmd::kGroup, 0},
    {"mathbf", Cmd::kGroup, 0},
    {"bm", Cmd::kGroup, 0},
    {"boldsymbol", Cmd::kGroup, 0},
    {"mathbb", Cmd::kText, 0},
    {"circ", Cmd::kDegree, 0},
    {"degree", Cmd::kDegree, 0},
    {"%", Cmd::kPercent, 0},
    {"{", Cmd::kLBrace, 0},
    {"}", Cmd::kRBrace, 0},
    {"lbrace", Cmd::kLBrace, 0},
    {"rbrace", Cmd::kRBrace, 0},
    {"langle", Cmd::kLAngle, 0},
    {"rangle", Cmd::kRAngle, 0},
    {"vert", Cmd::kVert, 0},
    {"lvert", Cmd::kVert, 0},
    {"rvert", Cmd::kVert, 0},
    {"mid", Cmd::kVert, 0},
    {"|", Cmd::kVert, 0},
    {"begin", Cmd::kBegin, 0},
    {"end", Cmd::kEnd, 0},
    {"emptyset", Cmd::kEmptySet, 0},
    {"varnothing", Cmd::kEmptySet, 0},
    {"\\", Cmd::kRowSep, 0},
    {"neg", Cmd::kNeg, 0},
    {"lnot", Cmd::kNeg, 0},
    {"alpha", Cmd::kGreek, 0},
    {"beta", Cmd::kGreek, 0},
    {"gamma", Cmd::kGreek, 0},
    {"delta", Cmd::kGreek, 0},
    {"epsilon", Cmd::kGreek, 0},
    {"varepsilon", Cmd::kGreek, 0},
    {"zeta", Cmd::kGreek, 0},
    {"eta", Cmd::kGreek, 0},
    {"theta", Cmd::kGreek, 0},
    {"vartheta", Cmd::kGreek, 0},
    {"kappa", Cmd::kGreek, 0},
    {"lambda", Cmd::kGreek, 0},
    {"mu", Cmd::kGreek, 0},
    {"nu", Cmd::kGreek, 0},
    {"xi", Cmd::kGreek, 0},
    {"rho", Cmd::kGreek, 0},
    {"sigma", Cmd::kGreek, 0},
    {"tau", Cmd::kGreek, 0},
    {"phi", Cmd::kGreek, 0},
    {"varphi", Cmd::kGreek, 0},
    {"chi", Cmd::kGreek, 0},
    {"psi", Cmd::kGreek, 0},
    {"omega", Cmd::kGreek, 0},
    {"Gamma", Cmd::kGreek, 0},
    {"Delta", Cmd::kGreek, 0},
    {"Theta", Cmd::kGreek, 0},
    {"Lambda", Cmd::kGreek, 0},
    {"Sigma", Cmd::kGreek, 0},
    {"Phi", Cmd::kGreek, 0},
    {"Psi", Cmd::kGreek, 0},
    {"Omega", Cmd::kGreek, 0},
};

// Commands that only space or size things; they are skipped like whitespace.
constexpr std::string_view kSkippedCommands[] = {",",
                                                 ";",
                                                 ":",
                                                 "!",
                                                 " ",
                                                 ">",
                                                 "quad",
                                                 "qquad",
                                                 "left",
                                                 "right",
                                                 "big",
                                                 "Big",
                                                 "bigg",
                                                 "Bigg",
                                                 "bigl",
                                                 "bigr",
                                                 "Bigl",
                                                 "Bigr",
                                                 "biggl",
                                                 "biggr",
                                                 "Biggl",
                                                 "Biggr",
                                                 "displaystyle",
                                                 "textstyle",
                                                 "limits",
                                                 "nolimits",
                                                 "$",
                                                 "(",
                                                 ")",
                                                 "[",
                                                 "]",
                                                 "middle",
                                                 "thinspace",
                                                 "enspace",
                                                 "rm",
                                                 "bf",
                                                 "it",
                                                 "negthinspace",
                                                 "allowbreak",
                                                 "nobreak",
                                                 "relax",
                                                 "noindent"};

const CmdInfo *FindCommand(std::string_view name) {
  for (const CmdInfo &c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

bool IsSkippedCommand(std::string_view name) {
  for (std::string_view s : kSkippedCommands) {
    if (s == name) return true;
  }
  return false;
}

struct WordInfo {
  std::string_view word;
  Cmd cmd;
  uint8_t aux;
};

// Plain-text spellings.
constexpr WordInfo kWords[] = {
    {"sin", Cmd::kFunc, uint8_t(Func::kSin)},
    {"cos", Cmd::kFunc, uint8_t(Func::kCos)},
    {"tan", Cmd::kFunc, uint8_t(Func::kTan)},
    {"cot", Cmd::kFunc, uint8_t(Func::kCot)},
    {"sec", Cmd::kFunc, uint8_t(Func::kSec)},
    {"csc", Cmd::kFunc, uint8_t(Func::kCsc)},
    {"arcsin", Cmd::kFunc, uint8_t(Func::kArcsin)},
    {"arccos", Cmd::kFunc, uint8_t(Func::kArccos)},
    {"arctan", Cmd::kFunc, uint8_t(Func::kArctan)},
    {"sinh", Cmd::kFunc, uint8_t(Func::kSinh)},
    {"cosh", Cmd::kFunc, uint8_t(Func::kCosh)},
    {"tanh", Cmd::kFunc, uint8_t(Func::kTanh)},
    {"ln", Cmd::kFunc, uint8_t(Func::kLn)},
    {"log", Cmd::kFunc, uint8_t(Func::kLn)},
    {"exp", Cmd::kFunc, uint8_t(Func::kExp)},
    {"sqrt", Cmd::kSqrt, 0},
    {"pi", Cmd::kPi, 0},
    {"inf", Cmd::kInfty, 0},
    {"infty", Cmd::kInfty, 0},
    {"infinity", Cmd::kInfty, 0},
};

const WordInfo *FindWord(std::string_view w) {
  for (const WordInfo &x : kWords) {
    if (x.word == w) return &x;
  }
  return nullptr;
}

// Two-letter words read as units (dropped) rather than as a product of two
// variables.
constexpr std::string_view kShortUnits[] = {"cm", "mm", "km", "kg", "mg", "ml", "mL", "ft", "yd",
                                            "mi", "hr", "oz", "lb", "sq", "in", "am", "pm", "th",
                                            "st", "nd", "rd", "m2", "cc", "kb", "MB", "GB", "mph"};

bool IsShortUnit(std::string_view w) {
  for (std::string_view u : kShortUnits) {
    if (u == w) return true;
  }
  return false;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view StripSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}
bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

struct Token {
  Tok kind = Tok::kEnd;
  size_t begin = 0;
  size_t end = 0;
  std::string_view text;  // letters of a word, name of a command, the char
  Cmd cmd = Cmd::kUnknown;
  uint8_t aux = 0;
  char ch = 0;
  size_t content_begin = 0;  // kText: raw content range
  size_t content_end = 0;
};

class Parser {
 public:
  Parser(std::string_view in, const ParseLimits &limits, Tree *tree)
      : in_(in), end_(in.size()), limits_(limits), tree_(tree) {}

  absl::Status Run() {
    tree_->Clear();
    if (static_cast<int64_t>(in_.size()) > limits_.max_input_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("answer is ", in_.size(), " bytes, limit ", limits_.max_input_bytes));
    }
    int32_t root = -1;
    if (LooksLikePlainText()) {
      root = MakeText(0, in_.size());
    } else {
      root = ParseList();
      if (root >= 0) {
        Token t = Peek();
        if (t.kind != Tok::kEnd) Fail(t.begin, "unexpected input");
      }
    }
    if (!error_.ok()) return error_;
    if (root < 0) return absl::InternalError("parser returned no tree and no error");
    tree_->root = root;
    return absl::OkStatus();
  }

 private:
  // ---- errors and budgets ----
  int32_t Fail(size_t at, std::string_view what) {
    if (error_.ok()) {
      error_ = absl::InvalidArgumentError(absl::StrCat("offset ", at, ": ", std::string(what)));
    }
    return -1;
  }
  int32_t Exhausted(std::string_view what) {
    if (error_.ok()) error_ = absl::ResourceExhaustedError(std::string(what));
    return -1;
  }

  struct DepthGuard {
    explicit DepthGuard(Parser *p) : p(p) { ++p->depth_; }
    ~DepthGuard() { --p->depth_; }
    bool ok() const { return p->depth_ <= p->limits_.max_depth; }
    Parser *p;
  };

  int32_t NewNode(NodeKind kind, uint8_t op, const int32_t *kids, int32_t n) {
    if (!error_.ok()) return -1;
    if (static_cast<int32_t>(tree_->nodes.size()) >= limits_.max_nodes) {
      return Exhausted(absl::StrCat("more than ", limits_.max_nodes, " nodes"));
    }
    Node node;
    node.kind = kind;
    node.op = op;
    node.first_kid = static_cast<int32_t>(tree_->kids.size());
    node.num_kids = n;
    tree_->kids.insert(tree_->kids.end(), kids, kids + n);
    tree_->nodes.push_back(node);
    return static_cast<int32_t>(tree_->nodes.size()) - 1;
  }
  int32_t Leaf(NodeKind kind, uint8_t op = 0) { return NewNode(kind, op, nullptr, 0); }
  int32_t Unary(NodeKind kind, int32_t a, uint8_t op = 0) {
    if (a < 0) return -1;
    return NewNode(kind, op, &a, 1);
  }
  int32_t Binary(NodeKind kind, int32_t a, int32_t b, uint8_t op = 0) {
    if (a < 0 || b < 0) return -1;
    int32_t k[2] = {a, b};
    return NewNode(kind, op, k, 2);
  }
  int32_t Nary(NodeKind kind, const Kids &kids, uint8_t op = 0) {
    for (int32_t k : kids) {
      if (k < 0) return -1;
    }
    if (kids.size() == 1 && (kind == NodeKind::kAdd || kind == NodeKind::kMul ||
                             kind == NodeKind::kList || kind == NodeKind::kUnion)) {
      return kids[0];
    }
    return NewNode(kind, op, kids.data(), static_cast<int32_t>(kids.size()));
  }
  void SetText(int32_t node, std::string_view s) {
    if (node < 0) return;
    tree_->nodes[node].text_begin = static_cast<uint32_t>(tree_->text.size());
    tree_->nodes[node].text_len = static_cast<uint32_t>(s.size());
    tree_->text.append(s);
  }
  int32_t Symbol(std::string_view name) {
    int32_t n = Leaf(NodeKind::kSymbol);
    SetText(n, name);
    return n;
  }
  int32_t Const(Constant c) { return Leaf(NodeKind::kConstant, uint8_t(c)); }

  // ---- plain-text answers ----
  // "odd", "east", "Evelyn": letters and spaces only, with a word of three or
  // more letters that is not a function name.
  bool LooksLikePlainText() const {
    bool long_word = false;
    size_t i = 0;
    while (i < in_.size()) {
      char c = in_[i];
      if (IsAsciiLetter(c) || static_cast<unsigned char>(c) >= 0x80) {
        size_t j = i;
        while (j < in_.size() &&
               (IsAsciiLetter(in_[j]) || static_cast<unsigned char>(in_[j]) >= 0x80)) {
          ++j;
        }
        std::string_view w = in_.substr(i, j - i);
        if (FindWord(w) != nullptr) return false;
        // A lone non-ASCII character is a math symbol (π, ∞, √), not a word.
        if (static_cast<unsigned char>(c) >= 0x80 && w.size() <= 3) return false;
        if (w.size() >= 3) long_word = true;
        i = j;
      } else if (c == ' ' || c == '.' || c == '-' || c == '\'' || c == '\n' || c == '\t') {
        ++i;
      } else {
        return false;
      }
    }
    return long_word;
  }

  int32_t MakeText(size_t b, size_t e) {
    std::string norm;
    for (size_t i = b; i < e && i < in_.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(in_[i]);
      if (c >= 0x80 || absl::ascii_isalnum(c)) norm.push_back(absl::ascii_tolower(c));
    }
    int32_t n = Leaf(NodeKind::kText);
    SetText(n, norm);
    return n;
  }

  // ---- lexer ----
  // Skips whitespace, spacing/sizing commands and math-mode delimiters.
  void SkipSpace() {
    while (pos_ < end_) {
      char c = in_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '~' || c == '$') {
        ++pos_;
        continue;
      }
      if (c == '\\' && pos_ + 1 < end_) {
        size_t b = pos_ + 1;
        size_t e = b;
        if (IsAsciiLetter(in_[b])) {
          while (e < end_ && IsAsciiLetter(in_[e])) ++e;
        } else {
          e = b + 1;
        }
        std::string_view name = in_.substr(b, e - b);
        if (IsSkippedCommand(name)) {
          pos_ = e;
          // \left. and \right. are empty delimiters.
          if ((name == "left" || name == "right") && pos_ < end_ && in_[pos_] == '.') ++pos_;
          continue;
        }
        if (name == "hspace" || name == "vspace" || name == "phantom" || name == "label") {
          pos_ = e;
          size_t save = pos_;
          if (!SkipBracedRaw()) pos_ = save;
          continue;
        }
      }
      break;
    }
  }

  // At '{' (after spaces): moves past the matching '}'. Returns false if there
  // is none.
  bool SkipBracedRaw() {
    while (pos_ < end_ && in_[pos_] == ' ') ++pos_;
    if (pos_ >= end_ || in_[pos_] != '{') return false;
    int depth = 0;
    for (size_t i = pos_; i < end_; ++i) {
      if (in_[i] == '\\') {
        ++i;
        continue;
      }
      if (in_[i] == '{') ++depth;
      if (in_[i] == '}' && --depth == 0) {
        pos_ = i + 1;
        return true;
      }
    }
    return false;
  }

  // Reads a grouping separator inside a number at `p` ("," / ",\!" / "{,}" /
  // "\," followed by exactly three digits and no fourth). Returns the position
  // of the three digits or npos.
  size_t GroupSeparator(size_t p) const {
    size_t q = std::string_view::npos;
    if (p < end_ && in_[p] == ',') {
      size_t r = p + 1;
      bool explicit_group = false;
      if (in_.substr(r, 2) == "\\!") {
        r += 2;
        explicit_group = true;
        while (r < end_ && in_[r] == ' ') ++r;
      }
      if (!explicit_group && paren_depth_ > 0) return std::string_view::npos;
      q = r;
    } else if (in_.substr(p, 3) == "{,}") {
      q = p + 3;
    } else if (in_.substr(p, 2) == "\\," || in_.substr(p, 2) == "\\ ") {
      q = p + 2;
    } else if (p < end_ && in_[p] == ' ' && paren_depth_ == 0) {
      q = p + 1;  // SI style: 1 234 567
    } else {
      return std::string_view::npos;
    }
    if (q + 3 > end_) return std::string_view::npos;
    if (!IsDigit(in_[q]) || !IsDigit(in_[q + 1]) || !IsDigit(in_[q + 2])) {
      return std::string_view::npos;
    }
    if (q + 3 < end_ && IsDigit(in_[q + 3])) return std::string_view::npos;
    return q;
  }

  Token LexNumber(size_t p) {
    Token t;
    t.kind = Tok::kNumber;
    t.begin = p;
    size_t int_start = p;
    while (p < end_ && IsDigit(in_[p])) ++p;
    size_t first_group = p - int_start;
    if (first_group >= 1 && first_group <= 3) {
      for (size_t q = GroupSeparator(p); q != std::string_view::npos; q = GroupSeparator(p)) {
        p = q + 3;
      }
    }
    if (p + 1 < end_ && in_[p] == '.' && IsDigit(in_[p + 1])) {
      p += 1;
      while (p < end_ && IsDigit(in_[p])) ++p;
    }
    if (p + 1 < end_ && (in_[p] == 'e' || in_[p] == 'E')) {
      size_t q = p + 1;
      if (q < end_ && (in_[q] == '+' || in_[q] == '-')) ++q;
      if (q < end_ && IsDigit(in_[q]) && !(q + 1 < end_ && IsAsciiLetter(in_[q + 1]))) {
        while (q < end_ && IsDigit(in_[q])) ++q;
        p = q;
      }
    }
    t.end = p;
    t.text = in_.substr(t.begin, p - t.begin);
    return t;
  }

  Token Peek() {
    SkipSpace();
    Token t;
    t.begin = pos_;
    if (pos_ >= end_) {
      t.kind = Tok::kEnd;
      t.end = pos_;
      return t;
    }
    char c = in_[pos_];
    if (IsDigit(c) || (c == '.' && pos_ + 1 < end_ && IsDigit(in_[pos_ + 1]))) {
      return LexNumber(pos_);
    }
    if (IsAsciiLetter(c)) {
      size_t e = pos_;
      while (e < end_ && IsAsciiLetter(in_[e])) ++e;
      t.end = e;
      t.text = in_.substr(pos_, e - pos_);
      t.kind = t.text.size() == 1 ? Tok::kLetter : Tok::kWord;
      if (t.kind == Tok::kWord) {
        if (const WordInfo *w = FindWord(t.text)) {
          t.kind = Tok::kCommand;
          t.cmd = w->cmd;
          t.aux = w->aux;
        }
      }
      return t;
    }
    if (c == '\\') {
      size_t b = pos_ + 1;
      size_t e = b;
      if (b < end_ && IsAsciiLetter(in_[b])) {
        while (e < end_ && IsAsciiLetter(in_[e])) ++e;
      } else if (b < end_) {
        e = b + 1;
      }
      t.kind = Tok::kCommand;
      t.text = in_.substr(b, e - b);
      t.end = e;
      if (const CmdInfo *info = FindCommand(t.text)) {
        t.cmd = info->cmd;
        t.aux = info->aux;
      }
      if (t.cmd == Cmd::kText) {
        size_t save = pos_;
        pos_ = e;
        while (pos_ < end_ && in_[pos_] == ' ') ++pos_;
        size_t open = pos_;
        if (SkipBracedRaw()) {
          t.kind = Tok::kText;
          t.content_begin = open + 1;
          t.content_end = pos_ - 1;
          t.end = pos_;
        } else {
          t.cmd = Cmd::kUnknown;
        }
        pos_ = save;
      }
      return t;
    }
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      struct Utf8 {
        std::string_view bytes;
        Cmd cmd;
        uint8_t aux;
      };
      static constexpr Utf8 kUtf8[] = {
          {"\xCF\x80", Cmd::kPi, 0},
          {"\xE2\x88\x9E", Cmd::kInfty, 0},
          {"\xE2\x88\x9A", Cmd::kSqrt, 0},
          {"\xC3\x97", Cmd::kMul, 0},
          {"\xC2\xB7", Cmd::kMul, 0},
          {"\xE2\x8B\x85", Cmd::kMul, 0},
          {"\xE2\x88\x92", Cmd::kMinus, 0},
          {"\xE2\x80\x93", Cmd::kMinus, 0},
          {"\xE2\x89\xA4", Cmd::kRel, uint8_t(Rel::kLe)},
          {"\xE2\x89\xA5", Cmd::kRel, uint8_t(Rel::kGe)},
          {"\xE2\x89\xA0", Cmd::kRel, uint8_t(Rel::kNe)},
          {"\xE2\x88\x88", Cmd::kRel, uint8_t(Rel::kIn)},
          {"\xC2\xB0", Cmd::kDegree, 0},
          {"\xE2\x88\xAA", Cmd::kCup, 0},
          {"\xC3\xB7", Cmd::kDiv, 0},
          {"\xC2\xB1", Cmd::kPm, 0},
          {"\xEF\xBC\x8C", Cmd::kUnknown, ','},  // full-width comma
      };
      for (const Utf8 &x : kUtf8) {
        if (in_.substr(pos_, x.bytes.size()) == x.bytes) {
          t.end = pos_ + x.bytes.size();
          if (x.cmd == Cmd::kUnknown) {
            t.kind = Tok::kChar;
            t.ch = static_cast<char>(x.aux);
          } else {
            t.kind = Tok::kCommand;
            t.cmd = x.cmd;
            t.aux = x.aux;
          }
          return t;
        }
      }
      // Any other non-ASCII run is a word (names in other scripts).
      size_t e = pos_;
      while (e < end_ && static_cast<unsigned char>(in_[e]) >= 0x80) ++e;
      t.kind = Tok::kWord;
      t.end = e;
      t.text = in_.substr(pos_, e - pos_);
      return t;
    }
    t.kind = Tok::kChar;
    t.ch = c;
    t.end = pos_ + 1;
    return t;
  }

  void Take(const Token &t) { pos_ = t.end; }
  bool IsChar(const Token &t, char c) const { return t.kind == Tok::kChar && t.ch == c; }
  bool IsCmd(const Token &t, Cmd c) const { return t.kind == Tok::kCommand && t.cmd == c; }

  bool Expect(char c) {
    Token t = Peek();
    if (!IsChar(t, c)) {
      Fail(t.begin, absl::StrCat("expected '", std::string(1, c), "'"));
      return false;
    }
    Take(t);
    return true;
  }

  // ---- grammar ----
  bool IsSeparatorText(const Token &t) const {
    if (t.kind == Tok::kText) {
      std::string_view s = StripSpace(in_.substr(t.content_begin, t.content_end - t.content_begin));
      return s == "and" || s == "or" || s == "," || s == ", and" || s == "and/or";
    }
    if (t.kind == Tok::kWord) return t.text == "and" || t.text == "or";
    return false;
  }

  bool IsListSeparator(const Token &t) const {
    return IsChar(t, ',') || IsChar(t, ';') || IsSeparatorText(t);
  }

  // list := relation (sep relation)*
  int32_t ParseList() {
    DepthGuard g(this);
    if (!g.ok()) return Exhausted("nesting too deep");
    Kids items;
    int32_t first = ParseRelation();
    if (first < 0) return -1;
    items.push_back(first);
    while (true) {
      Token t = Peek();
      if (!IsListSeparator(t)) break;
      Take(t);
      // "3, and 5" and a trailing separator.
      Token u = Peek();
      if (IsSeparatorText(u)) {
        Take(u);
        u = Peek();
      }
      if (u.kind == Tok::kEnd) break;
      int32_t next = ParseRelation();
      if (next < 0) return -1;
      items.push_back(next);
    }
    return Nary(NodeKind::kList, items);
  }

  bool PeekRel(Rel *rel, Token *tok) {
    Token t = Peek();
    *tok = t;
    if (t.kind == Tok::kCommand && t.cmd == Cmd::kRel) {
      *rel = static_cast<Rel>(t.aux);
      return true;
    }
    if (t.kind != Tok::kChar) return false;
    char next = t.end < end_ ? in_[t.end] : 0;
    switch (t.ch) {
      case '=':
        *rel = Rel::kEq;
        return true;
      case '<':
        *rel = next == '=' ? Rel::kLe : Rel::kLt;
        if (next == '=') tok->end += 1;
        return true;
      case '>':
        *rel = next == '=' ? Rel::kGe : Rel::kGt;
        if (next == '=') tok->end += 1;
        return true;
      case '!':
        if (next == '=') {
          *rel = Rel::kNe;
          tok->end += 1;
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  // relation := union (relop union)*
  int32_t ParseRelation() {
    int32_t lhs = ParseUnion();
    while (lhs >= 0) {
      Rel rel;
      Token t;
      if (!PeekRel(&rel, &t)) break;
      Take(t);
      if (rel == Rel::kEq) {
        // "==" as in code.
        Token u = Peek();
        if (IsChar(u, '=')) Take(u);
      }
      int32_t rhs = ParseUnion();
      lhs = Binary(NodeKind::kRelation, lhs, rhs, uint8_t(rel));
    }
    return lhs;
  }

  // union := additive (\cup additive)*
  int32_t ParseUnion() {
    Kids parts;
    int32_t first = ParseAdditive();
    if (first < 0) return -1;
    parts.push_back(first);
    while (true) {
      Token t = Peek();
      if (!IsCmd(t, Cmd::kCup) && !(t.kind == Tok::kLetter && t.text == "U" && parts.size() > 0 &&
                                    tree_->nodes[parts.back()].kind == NodeKind::kBracket)) {
        break;
      }
      Take(t);
      int32_t next = ParseAdditive();
      if (next < 0) return -1;
      parts.push_back(next);
    }
    return Nary(NodeKind::kUnion, parts);
  }

  // additive := term (('+' | '-' | \pm | \mp) term)*
  int32_t ParseAdditive() {
    Kids terms;
    int32_t first = ParseTerm();
    if (first < 0) return -1;
    terms.push_back(first);
    while (true) {
      Token t = Peek();
      bool minus = IsChar(t, '-') || IsCmd(t, Cmd::kMinus);
      bool plus = IsChar(t, '+');
      bool pm = IsCmd(t, Cmd::kPm) || IsCmd(t, Cmd::kMp);
      if (!minus && !plus && !pm) break;
      Take(t);
      int32_t term = ParseTerm();
      if (term < 0) return -1;
      if (pm) {
        int32_t left = Nary(NodeKind::kAdd, terms);
        terms.clear();
        terms.push_back(Binary(NodeKind::kPlusMinus, left, term, IsCmd(t, Cmd::kMp) ? 1 : 0));
        if (terms.back() < 0) return -1;
      } else {
        terms.push_back(minus ? Unary(NodeKind::kNeg, term) : term);
        if (terms.back() < 0) return -1;
      }
    }
    return Nary(NodeKind::kAdd, terms);
  }

  bool StartsImplicitFactor(const Token &t) const {
    switch (t.kind) {
      case Tok::kNumber:
      case Tok::kLetter:
      case Tok::kWord:
        return true;
      case Tok::kChar:
        return t.ch == '(' || (t.ch == '|' && abs_depth_ == 0);
      case Tok::kCommand:
        return t.cmd == Cmd::kFrac || t.cmd == Cmd::kSqrt || t.cmd == Cmd::kFunc ||
               t.cmd == Cmd::kPi || t.cmd == Cmd::kGreek || t.cmd == Cmd::kBinom ||
               t.cmd == Cmd::kGroup || t.cmd == Cmd::kInfty ||
               (t.cmd == Cmd::kVert && abs_depth_ == 0);
      default:
        return false;
    }
  }

  bool IsIntegerLiteral(int32_t n) const {
    if (n < 0) return false;
    const Node &node = tree_->nodes[n];
    return node.kind == NodeKind::kNumber && node.op == 0;
  }

  // Drops unit words and \text{...} decorations after a quantity: "15 cm^2",
  // "5.4 \text{ cents}", "20 dollars per hour". Returns true if something was
  // dropped.
  bool DropUnits() {
    bool dropped = false;
    while (true) {
      Token t = Peek();
      bool unit = false;
      if (t.kind == Tok::kText && !IsSeparatorText(t)) {
        unit = true;
      } else if (t.kind == Tok::kWord && !IsSeparatorText(t) &&
                 (t.text.size() >= 3 || IsShortUnit(t.text) ||
                  static_cast<unsigned char>(t.text[0]) >= 0x80)) {
        unit = true;
      } else if (dropped && (IsChar(t, '^') || IsChar(t, '/'))) {
        // cm^2, km/h after a unit.
        Take(t);
        Token u = Peek();
        if (u.kind == Tok::kNumber || u.kind == Tok::kLetter || u.kind == Tok::kWord) {
          Take(u);
        } else if (IsChar(u, '{')) {
          if (!SkipBracedRaw()) return dropped;
        }
        continue;
      } else if (dropped && t.kind == Tok::kLetter) {
        unit = true;  // "m" in "km / h" style tails
      }
      if (!unit) return dropped;
      Take(t);
      dropped = true;
    }
  }

  // term := unary (('*' | '/' | \cdot | \times | \div | implicit) unary)*
  int32_t ParseTerm() {
    int32_t acc = ParseUnary();
    if (acc < 0) return -1;
    Kids factors;
    factors.push_back(acc);
    while (true) {
      Token t = Peek();
      if (IsSeparatorText(t)) break;
      if (IsChar(t, '*') || IsCmd(t, Cmd::kMul)) {
        Take(t);
        int32_t f = ParseUnary();
        if (f < 0) return -1;
        factors.push_back(f);
        continue;
      }
      if (IsChar(t, '/') || IsCmd(t, Cmd::kDiv)) {
        Take(t);
        int32_t f = ParseUnary();
        if (f < 0) return -1;
        int32_t num = Nary(NodeKind::kMul, factors);
        factors.clear();
        factors.push_back(Binary(NodeKind::kDiv, num, f));
        if (factors.back() < 0) return -1;
        continue;
      }
      if (t.kind == Tok::kText ||
          (t.kind == Tok::kWord && (t.text.size() >= 3 || IsShortUnit(t.text)))) {
        if (IsSeparatorText(t)) break;
        // A unit after a quantity. Only at the end of a term: drop it and the
        // tail of the unit.
        if (DropUnits()) continue;
        break;
      }
      if (!StartsImplicitFactor(t)) break;
      // "5 7" is not 35: two numbers side by side are not a product in LaTeX or
      // in prose.
      if (t.kind == Tok::kNumber) return Fail(t.begin, "two numbers without an operator");
      int32_t prev = factors.back();
      int32_t f = ParsePower();
      if (f < 0) return -1;
      // Mixed number: 2\frac{1}{2} means 2 + 1/2 (also written -2\frac{1}{2}).
      if (IsCmd(t, Cmd::kFrac) && factors.size() == 1) {
        const Node &fn = tree_->nodes[f];
        bool frac_of_ints = fn.kind == NodeKind::kDiv && IsIntegerLiteral(tree_->kid(f, 0)) &&
                            IsIntegerLiteral(tree_->kid(f, 1));
        if (frac_of_ints && IsIntegerLiteral(prev)) {
          factors[0] = Binary(NodeKind::kAdd, prev, f);
          if (factors[0] < 0) return -1;
          continue;
        }
        if (frac_of_ints && tree_->nodes[prev].kind == NodeKind::kNeg &&
            IsIntegerLiteral(tree_->kid(prev, 0))) {
          int32_t sum = Binary(NodeKind::kAdd, tree_->kid(prev, 0), f);
          factors[0] = Unary(NodeKind::kNeg, sum);
          if (factors[0] < 0) return -1;
          continue;
        }
      }
      factors.push_back(f);
    }
    return Nary(NodeKind::kMul, factors);
  }

  // unary := ('-' | '+' | \pm | \mp) unary | power
  int32_t ParseUnary() {
    DepthGuard g(this);
    if (!g.ok()) return Exhausted("nesting too deep");
    Token t = Peek();
    if (IsChar(t, '-') || IsCmd(t, Cmd::kMinus)) {
      Take(t);
      return Unary(NodeKind::kNeg, ParseUnary());
    }
    if (IsChar(t, '+')) {
      Take(t);
      return ParseUnary();
    }
    if (IsCmd(t, Cmd::kPm) || IsCmd(t, Cmd::kMp)) {
      Take(t);
      int32_t zero = Leaf(NodeKind::kNumber);
      SetText(zero, "0");
      return Binary(NodeKind::kPlusMinus, zero, ParseUnary(), IsCmd(t, Cmd::kMp) ? 1 : 0);
    }
    return ParsePower();
  }

  // Degrees written as ^\circ or ^{\circ}: consumed and dropped (the value
  // stays in degrees).
  bool TakeDegreeSuperscript() {
    size_t save = pos_;
    Token t = Peek();
    if (!IsChar(t, '^')) return false;
    Take(t);
    Token u = Peek();
    if (IsCmd(u, Cmd::kDegree)) {
      Take(u);
      return true;
    }
    if (IsChar(u, '{')) {
      Take(u);
      Token v = Peek();
      if (IsCmd(v, Cmd::kDegree)) {
        Take(v);
        Token w = Peek();
        if (IsChar(w, '}')) {
          Take(w);
          return true;
        }
      }
    }
    pos_ = save;
    return false;
  }

  // power := postfix ('^' exponent)?
  int32_t ParsePower() {
    int32_t base = ParsePostfix(ParsePrimary());
    if (base < 0) return -1;
    while (true) {
      if (TakeDegreeSuperscript()) {
        base = ParsePostfix(base);
        if (base < 0) return -1;
        continue;
      }
      Token t = Peek();
      if (!(IsChar(t, '^') || (IsChar(t, '*') && t.end < end_ && in_[t.end] == '*'))) break;
      Take(t);
      if (t.ch == '*') ++pos_;  // "**" as in code
      int32_t exponent = ParseExponent();
      base = ParsePostfix(Binary(NodeKind::kPow, base, exponent));
      if (base < 0) return -1;
      break;  // right-associative chains are handled inside ParseExponent
    }
    return base;
  }

  // exponent := '{' list '}' | '(' list ')' | '-' exponent | single token, then
  // ('^' exponent)?
  int32_t ParseExponent() {
    DepthGuard g(this);
    if (!g.ok()) return Exhausted("nesting too deep");
    Token t = Peek();
    int32_t e;
    if (IsChar(t, '-') || IsCmd(t, Cmd::kMinus)) {
      Take(t);
      return Unary(NodeKind::kNeg, ParseExponent());
    }
    if (IsChar(t, '+')) {
      Take(t);
      return ParseExponent();
    }
    if (IsChar(t, '{')) {
      e = ParseBraceGroup();
    } else if (IsChar(t, '(')) {
      e = ParsePrimary();
    } else if (t.kind == Tok::kNumber || t.kind == Tok::kLetter || t.kind == Tok::kCommand) {
      e = ParsePrimary();
    } else {
      return Fail(t.begin, "expected an exponent");
    }
    e = ParsePostfix(e);
    if (e < 0) return -1;
    Token u = Peek();
    if (IsChar(u, '^') && !TakeDegreeSuperscript()) {
      Take(u);
      return Binary(NodeKind::kPow, e, ParseExponent());
    }
    return e;
  }

  // postfix := primary ('!' | '%' | \% | degree | subscript)*
  int32_t ParsePostfix(int32_t n) {
    while (n >= 0) {
      Token t = Peek();
      if (IsChar(t, '!') && !(t.end < end_ && in_[t.end] == '=')) {
        Take(t);
        n = Unary(NodeKind::kFactorial, n);
      } else if (IsChar(t, '%') || IsCmd(t, Cmd::kPercent)) {
        Take(t);
        n = Unary(NodeKind::kPercent, n);
      } else if (IsCmd(t, Cmd::kDegree)) {
        Take(t);
      } else if (IsChar(t, '_')) {
        n = ParseSubscript(n, t);
      } else {
        break;
      }
    }
    return n;
  }

  // Reads a subscript's raw text: _8, _{10}, _x, _{12}.
  bool ReadSubscript(std::string_view *sub) {
    Token t = Peek();
    if (IsChar(t, '{')) {
      size_t open = pos_;
      if (!SkipBracedRaw()) return false;
      *sub = StripSpace(in_.substr(open + 1, pos_ - open - 2));
      return true;
    }
    if (pos_ < end_ && (IsDigit(in_[pos_]) || IsAsciiLetter(in_[pos_]))) {
      *sub = in_.substr(pos_, 1);
      ++pos_;
      return true;
    }
    if (t.kind == Tok::kCommand) {
      Take(t);
      *sub = in_.substr(t.begin, t.end - t.begin);
      return true;
    }
    return false;
  }

  int32_t ParseSubscript(int32_t n, const Token &underscore) {
    Take(underscore);
    std::string_view sub;
    if (!ReadSubscript(&sub)) return Fail(underscore.begin, "bad subscript");
    Node &node = tree_->nodes[n];
    if (node.kind == NodeKind::kNumber && node.op == 0) {
      int base = 0;
      for (char c : sub) {
        if (!IsDigit(c) || base > 100) return Fail(underscore.begin, "bad base subscript");
        base = base * 10 + (c - '0');
      }
      if (sub.empty() || base < 2 || base > 36) return Fail(underscore.begin, "bad base");
      node.kind = NodeKind::kBaseNumber;
      node.aux = base;
      return n;
    }
    if (node.kind == NodeKind::kSymbol) {
      std::string name(tree_->NodeText(n));
      name.append("_").append(sub);
      SetText(n, name);
      return n;
    }
    return Fail(underscore.begin, "subscript on an expression");
  }

  // '{' list '}': a TeX group; two or more items make a set.
  int32_t ParseBraceGroup() {
    Token t = Peek();
    if (!IsChar(t, '{')) return Fail(t.begin, "expected '{'");
    Take(t);
    ++brace_depth_;
    Token u = Peek();
    int32_t inner;
    if (IsChar(u, '}')) {
      return Fail(u.begin, "empty group");
    }
    inner = ParseList();
    --brace_depth_;
    if (inner < 0) return -1;
    if (!Expect('}')) return -1;
    if (tree_->nodes[inner].kind == NodeKind::kList) tree_->nodes[inner].kind = NodeKind::kSet;
    return inner;
  }

  // A TeX macro argument: a group, one digit, one letter or one command.
  int32_t ParseTexArg() {
    SkipSpace();
    if (pos_ >= end_) return Fail(pos_, "missing argument");
    char c = in_[pos_];
    if (c == '{') return ParseBraceGroup();
    if (IsDigit(c)) {
      int32_t n = Leaf(NodeKind::kNumber);
      SetText(n, in_.substr(pos_, 1));
      ++pos_;
      return n;
    }
    if (IsAsciiLetter(c)) {
      std::string_view l = in_.substr(pos_, 1);
      ++pos_;
      if (l == "e") return Const(Constant::kE);
      if (l == "i") return Const(Constant::kI);
      return Symbol(l);
    }
    return ParsePrimary();
  }

  // Bracketed: ( ), [ ], ( ], [ ), \langle \rangle.
  int32_t ParseBracket(char open) {
    ++paren_depth_;
    Kids items;
    while (true) {
      int32_t item = ParseRelation();
      if (item < 0) return -1;
      items.push_back(item);
      Token t = Peek();
      if (IsChar(t, ',') || IsChar(t, ';')) {
        Take(t);
        continue;
      }
      break;
    }
    --paren_depth_;
    Token t = Peek();
    char close;
    if (IsChar(t, ')') || IsChar(t, ']')) {
      close = t.ch;
    } else if (IsCmd(t, Cmd::kRAngle)) {
      close = ')';
    } else {
      return Fail(t.begin, "unclosed bracket");
    }
    Take(t);
    if (items.size() == 1 && ((open == '(' && close == ')') || (open == '[' && close == ']'))) {
      return items[0];
    }
    int32_t n = Nary(NodeKind::kBracket, items, static_cast<uint8_t>(open));
    if (n >= 0) tree_->nodes[n].aux = close;
    return n;
  }

  int32_t ParseFunction(Func f, size_t at) {
    // \sin^2 x, \sin^{-1} x
    int32_t power = -1;
    Token t = Peek();
    if (IsChar(t, '^')) {
      Take(t);
      power = ParseExponent();
      if (power < 0) return -1;
      const Node &p = tree_->nodes[power];
      if (p.kind == NodeKind::kNeg && IsIntegerLiteral(tree_->kid(power, 0)) &&
          tree_->NodeText(tree_->kid(power, 0)) == "1") {
        if (f == Func::kSin)
          f = Func::kArcsin;
        else if (f == Func::kCos)
          f = Func::kArccos;
        else if (f == Func::kTan)
          f = Func::kArctan;
        else
          return Fail(at, "inverse of this function is not supported");
        power = -1;
      }
    }
    int32_t base = -1;
    t = Peek();
    if (IsChar(t, '_') && f == Func::kLn) {
      Take(t);
      base = ParseTexArg();
      if (base < 0) return -1;
      f = Func::kLog;
    }
    int32_t arg;
    t = Peek();
    if (IsChar(t, '(')) {
      Take(t);
      arg = ParseBracket('(');
    } else if (IsChar(t, '{')) {
      arg = ParseBraceGroup();
    } else {
      // \sin 2x: implicit products up to the next operator or function.
      Kids factors;
      while (true) {
        Token u = Peek();
        if (!StartsImplicitFactor(u) || IsCmd(u, Cmd::kFunc) ||
            (u.kind == Tok::kWord && u.text.size() >= 3) ||
            (factors.size() > 0 && IsChar(u, '('))) {
          break;
        }
        int32_t x = ParsePower();
        if (x < 0) return -1;
        factors.push_back(x);
      }
      if (factors.empty()) return Fail(t.begin, "function without an argument");
      arg = Nary(NodeKind::kMul, factors);
    }
    if (arg < 0) return -1;
    int32_t call = base >= 0 ? Binary(NodeKind::kFunc, arg, base, uint8_t(f))
                             : Unary(NodeKind::kFunc, arg, uint8_t(f));
    if (power >= 0) call = Binary(NodeKind::kPow, call, power);
    return call;
  }

  int32_t ParseEnvironment(const Token &begin) {
    Take(begin);
    std::string_view env;
    if (!ReadSubscript(&env)) return Fail(begin.begin, "\\begin without a name");
    bool matrix = env == "pmatrix" || env == "bmatrix" || env == "Bmatrix" || env == "matrix" ||
                  env == "vmatrix" || env == "Vmatrix" || env == "smallmatrix" || env == "array";
    if (!matrix)
      return Fail(begin.begin, absl::StrCat("unsupported environment ", std::string(env)));
    if (env == "array") {
      size_t save = pos_;
      if (!SkipBracedRaw()) pos_ = save;
    }
    Kids cells;
    int32_t cols = -1;
    int32_t row_len = 0;
    ++paren_depth_;
    while (true) {
      Token t = Peek();
      if (IsCmd(t, Cmd::kEnd)) {
        Take(t);
        std::string_view name;
        if (!ReadSubscript(&name) || name != env) return Fail(t.begin, "mismatched \\end");
        break;
      }
      int32_t cell = ParseRelation();
      if (cell < 0) return -1;
      cells.push_back(cell);
      ++row_len;
      t = Peek();
      if (IsChar(t, '&')) {
        Take(t);
        continue;
      }
      if (IsCmd(t, Cmd::kRowSep) || IsCmd(t, Cmd::kEnd)) {
        if (IsCmd(t, Cmd::kRowSep)) Take(t);
        if (cols < 0) cols = row_len;
        if (row_len != cols) return Fail(t.begin, "ragged matrix");
        row_len = 0;
        continue;
      }
      return Fail(t.begin, "unexpected input in matrix");
    }
    --paren_depth_;
    if (row_len != 0) {
      if (cols >= 0 && row_len != cols) return Fail(pos_, "ragged matrix");
      cols = row_len;
    }
    if (cells.empty() || cols <= 0) return Fail(begin.begin, "empty matrix");
    int32_t n = Nary(NodeKind::kMatrix, cells);
    if (n >= 0) {
      tree_->nodes[n].kind = NodeKind::kMatrix;
      tree_->nodes[n].aux = cols;
    }
    return n;
  }

  // A \text{...}: a separator, a math fragment (\text{5}), or a plain-text
  // answer.
  int32_t ParseTextToken(const Token &t) {
    Take(t);
    std::string_view content = in_.substr(t.content_begin, t.content_end - t.content_begin);
    bool has_word = false;
    for (size_t i = 0; i + 1 < content.size(); ++i) {
      if (IsAsciiLetter(content[i]) && IsAsciiLetter(content[i + 1])) has_word = true;
    }
    if (static_cast<int>(content.find_first_not_of(" ")) < 0) {
      return Fail(t.begin, "empty text");
    }
    if (!has_word) {
      // Parse the content as math: \text{(C)} is a letter choice, \mathrm{e} a
      // constant.
      size_t save_end = end_;
      size_t save_pos = pos_;
      end_ = t.content_end;
      pos_ = t.content_begin;
      int32_t inner = ParseList();
      Token rest = Peek();
      bool ok = inner >= 0 && rest.kind == Tok::kEnd;
      end_ = save_end;
      pos_ = save_pos;
      if (ok) return inner;
      if (!error_.ok() && error_.code() == absl::StatusCode::kResourceExhausted) return -1;
      error_ = absl::OkStatus();
    }
    return MakeText(t.content_begin, t.content_end);
  }

  int32_t ParsePrimary() {
    DepthGuard g(this);
    if (!g.ok()) return Exhausted("nesting too deep");
    Token t = Peek();
    switch (t.kind) {
      case Tok::kEnd:
        return Fail(t.begin, "unexpected end of answer");
      case Tok::kNumber: {
        Take(t);
        std::string digits;
        uint8_t flags = 0;
        int ndigits = 0;
        for (char c : t.text) {
          if (IsDigit(c)) {
            digits.push_back(c);
            ++ndigits;
          } else if (c == '.') {
            digits.push_back(c);
            flags |= kNumDecimalPoint;
          } else if (c == 'e' || c == 'E') {
            digits.push_back('e');
            flags |= kNumExponent;
          } else if (c == '-' || c == '+') {
            if (digits.size() > 0 && digits.back() == 'e') digits.push_back(c);
          }
        }
        if (ndigits > limits_.max_digits) {
          return Exhausted(absl::StrCat("number with ", ndigits, " digits"));
        }
        int32_t n = Leaf(NodeKind::kNumber, flags);
        SetText(n, digits);
        return n;
      }
      case Tok::kLetter: {
        Take(t);
        if (t.text == "e") return Const(Constant::kE);
        if (t.text == "i") return Const(Constant::kI);
        return Symbol(t.text);
      }
      case Tok::kWord: {
        if (t.text.size() > 3 || static_cast<unsigned char>(t.text[0]) >= 0x80) {
          return Fail(t.begin, absl::StrCat("unexpected word '", std::string(t.text), "'"));
        }
        Take(t);
        Kids letters;
        for (size_t i = 0; i < t.text.size(); ++i) {
          std::string_view l = t.text.substr(i, 1);
          letters.push_back(l == "e"   ? Const(Constant::kE)
                            : l == "i" ? Const(Constant::kI)
                                       : Symbol(l));
        }
        return Nary(NodeKind::kMul, letters);
      }
      case Tok::kText:
        return ParseTextToken(t);
      case Tok::kChar:
        break;
      case Tok::kCommand:
        return ParseCommand(t);
    }
    switch (t.ch) {
      case '(':
      case '[':
        Take(t);
        return ParseBracket(t.ch);
      case '{':
        return ParseBraceGroup();
      case '|': {
        Take(t);
        ++abs_depth_;
        int32_t inner = ParseAdditive();
        --abs_depth_;
        if (inner < 0) return -1;
        Token u = Peek();
        if (!IsChar(u, '|') && !IsCmd(u, Cmd::kVert)) return Fail(u.begin, "unclosed |");
        Take(u);
        return Unary(NodeKind::kAbs, inner);
      }
      default:
        return Fail(t.begin, absl::StrCat("unexpected '", std::string(1, t.ch), "'"));
    }
  }

  int32_t ParseCommand(const Token &t) {
    switch (t.cmd) {
      case Cmd::kFrac: {
        Take(t);
        int32_t num = ParseTexArg();
        if (num < 0) return -1;
        int32_t den = ParseTexArg();
        return Binary(NodeKind::kDiv, num, den);
      }
      case Cmd::kBinom: {
        Take(t);
        int32_t n = ParseTexArg();
        if (n < 0) return -1;
        int32_t k = ParseTexArg();
        return Binary(NodeKind::kBinom, n, k);
      }
      case Cmd::kSqrt: {
        Take(t);
        int32_t index = -1;
        Token u = Peek();
        if (IsChar(u, '[')) {
          Take(u);
          index = ParseAdditive();
          if (index < 0 || !Expect(']')) return -1;
        }
        u = Peek();
        int32_t radicand = IsChar(u, '(') ? ParsePrimary() : ParseTexArg();
        if (index >= 0) return Binary(NodeKind::kSqrt, radicand, index);
        return Unary(NodeKind::kSqrt, radicand);
      }
      case Cmd::kFunc:
        Take(t);
        return ParseFunction(static_cast<Func>(t.aux), t.begin);
      case Cmd::kPi:
        Take(t);
        return Const(Constant::kPi);
      case Cmd::kInfty:
        Take(t);
        return Const(Constant::kInfinity);
      case Cmd::kEmptySet:
        Take(t);
        return Const(Constant::kEmptySet);
      case Cmd::kGreek: {
        Take(t);
        return Symbol(in_.substr(t.begin, t.end - t.begin));
      }
      case Cmd::kGroup: {
        Take(t);
        return ParseTexArg();
      }
      case Cmd::kLBrace: {
        Take(t);
        Token u = Peek();
        if (IsCmd(u, Cmd::kRBrace)) {
          Take(u);
          return Const(Constant::kEmptySet);
        }
        ++paren_depth_;
        int32_t inner = ParseList();
        --paren_depth_;
        if (inner < 0) return -1;
        u = Peek();
        if (!IsCmd(u, Cmd::kRBrace)) return Fail(u.begin, "unclosed \\{");
        Take(u);
        if (tree_->nodes[inner].kind == NodeKind::kList) {
          tree_->nodes[inner].kind = NodeKind::kSet;
          return inner;
        }
        return Unary(NodeKind::kSet, inner);
      }
      case Cmd::kLAngle:
        Take(t);
        return ParseBracket('(');
      case Cmd::kVert: {
        Take(t);
        ++abs_depth_;
        int32_t inner = ParseAdditive();
        --abs_depth_;
        if (inner < 0) return -1;
        Token u = Peek();
        if (!IsChar(u, '|') && !IsCmd(u, Cmd::kVert)) return Fail(u.begin, "unclosed |");
        Take(u);
        return Unary(NodeKind::kAbs, inner);
      }
      case Cmd::kBegin:
        return ParseEnvironment(t);
      default:
        return Fail(t.begin, absl::StrCat("unsupported command \\", std::string(t.text)));
    }
  }

  std::string_view in_;
  size_t end_;
  size_t pos_ = 0;
  const ParseLimits &limits_;
  Tree *tree_;
  absl::Status error_;
  int depth_ = 0;
  int paren_depth_ = 0;
  int brace_depth_ = 0;
  int abs_depth_ = 0;
};

}  // namespace

absl::Status ParseMath(std::string_view input, const ParseLimits &limits, Tree *tree) {
  Parser parser(input, limits, tree);
  return parser.Run();
}

namespace {

void AppendDebug(const Tree &t, int32_t i, std::string *out) {
  static constexpr const char *kKindNames[] = {
      "num",  "base",    "sym",  "const", "add",    "mul",   "div",     "neg",
      "pow",  "sqrt",    "func", "fact",  "abs",    "binom", "percent", "pm",
      "list", "bracket", "set",  "union", "matrix", "rel",   "text"};
  const Node &n = t.node(i);
  switch (n.kind) {
    case NodeKind::kNumber:
    case NodeKind::kSymbol:
      out->append(t.NodeText(i));
      return;
    case NodeKind::kBaseNumber:
      absl::StrAppend(out, std::string(t.NodeText(i)), "_", n.aux);
      return;
    case NodeKind::kText:
      absl::StrAppend(out, "\"", std::string(t.NodeText(i)), "\"");
      return;
    case NodeKind::kConstant: {
      static constexpr const char *kConst[] = {"pi", "E", "I", "inf", "emptyset"};
      out->append(kConst[n.op]);
      return;
    }
    default:
      break;
  }
  absl::StrAppend(out, "(", kKindNames[static_cast<int>(n.kind)]);
  if (n.kind == NodeKind::kFunc || n.kind == NodeKind::kRelation) {
    absl::StrAppend(out, ":", n.op);
  }
  if (n.kind == NodeKind::kBracket) {
    absl::StrAppend(out, ":", std::string(1, static_cast<char>(n.op)),
                    std::string(1, static_cast<char>(n.aux)));
  }
  for (int32_t k = 0; k < n.num_kids; ++k) {
    out->push_back(' ');
    AppendDebug(t, t.kid(i, k), out);
  }
  out->push_back(')');
}

}  // namespace

std::string DebugString(const Tree &tree, int32_t i) {
  std::string out;
  if (i >= 0 && i < static_cast<int32_t>(tree.nodes.size())) AppendDebug(tree, i, &out);
  return out;
}

}  // namespace rlvr::verifiers::math
