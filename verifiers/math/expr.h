// Expression trees produced by the math answer parser (parser.h) and consumed
// by the equivalence checker (equivalence.h).
//
// A Tree is a flat arena: nodes live in one vector and refer to their children
// by index, so a parse costs a handful of vector growths and a Tree can be
// cleared and reused without freeing (the verifier keeps one per thread).
// Number literals and names are stored as text in `Tree::text`; nothing in a
// Tree points into the parsed input, so the input may die first.
//
// Not thread-safe; a Tree is owned by one thread at a time.
#ifndef RLVR_VERIFIERS_MATH_EXPR_H_
#define RLVR_VERIFIERS_MATH_EXPR_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rlvr::verifiers::math {

enum class NodeKind : uint8_t {
  kNumber,      // decimal literal; text = "123", "12.50", "1.5e-3" (no separators);
                // op = kNum*
  kBaseNumber,  // digits written in a base, e.g. 52_8; text = digits, aux = base
  kSymbol,      // a variable; text = name ("x", "\\alpha", "x_1")
  kConstant,    // op = Constant
  kAdd,         // n-ary sum
  kMul,         // n-ary product
  kDiv,         // children: numerator, denominator
  kNeg,         // unary minus
  kPow,         // children: base, exponent
  kSqrt,        // children: radicand [, index]
  kFunc,        // op = Func; children: argument [, log base]
  kFactorial,   // child
  kAbs,         // |child|
  kBinom,       // children: n, k
  kPercent,     // child followed by a percent sign
  kPlusMinus,   // children: a, b meaning a ± b (op = 1 for a ∓ b); a unary ± has
                // a = 0
  kList,        // a bare comma-separated list of answers (order-insensitive)
  kBracket,     // (a, b), [a, b), ... ; op = opening char, aux = closing char
  kSet,         // \{a, b\}
  kUnion,       // A \cup B \cup ...
  kMatrix,      // row-major children; aux = number of columns
  kRelation,    // children: lhs, rhs; op = Rel
  kText,        // a plain-text answer; text = normalized words
};

enum NumberFlags : uint8_t {
  kNumDecimalPoint = 1,  // written with a decimal point ("2.50")
  kNumExponent = 2,      // written in scientific notation
};

enum class Constant : uint8_t { kPi, kE, kI, kInfinity, kEmptySet };

enum class Func : uint8_t {
  kSin,
  kCos,
  kTan,
  kCot,
  kSec,
  kCsc,
  kArcsin,
  kArccos,
  kArctan,
  kSinh,
  kCosh,
  kTanh,
  kLn,   // natural logarithm (\ln, and \log without a base)
  kLog,  // logarithm with an explicit base (second child)
  kExp,
};

enum class Rel : uint8_t { kEq, kLt, kLe, kGt, kGe, kNe, kIn };

struct Node {
  NodeKind kind;
  uint8_t op = 0;
  int32_t aux = 0;
  int32_t first_kid = 0;  // index into Tree::kids
  int32_t num_kids = 0;
  uint32_t text_begin = 0;  // into Tree::text
  uint32_t text_len = 0;
};

struct Tree {
  std::vector<Node> nodes;
  std::vector<int32_t> kids;
  std::string text;
  int32_t root = -1;

  void Clear() {
    nodes.clear();
    kids.clear();
    text.clear();
    root = -1;
  }
  const Node &node(int32_t i) const { return nodes[i]; }
  int32_t kid(int32_t i, int32_t k) const { return kids[nodes[i].first_kid + k]; }
  std::string_view NodeText(int32_t i) const {
    return std::string_view(text).substr(nodes[i].text_begin, nodes[i].text_len);
  }
};

// A human-readable prefix form of the subtree at `i`, for tests and error
// messages.
std::string DebugString(const Tree &tree, int32_t i);

}  // namespace rlvr::verifiers::math

#endif  // RLVR_VERIFIERS_MATH_EXPR_H_
