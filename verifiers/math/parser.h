// A hand-written recursive-descent parser for answers written in LaTeX or plain
// math.
//
// It accepts what math data sets and models write as a final answer: numbers
// (thousands separators, decimals, scientific notation, percentages, numbers in
// a base like 52_8), \frac/\dfrac/\tfrac and a/b, mixed numbers (2\frac{1}{2}),
// \sqrt[n]{x}, powers, \pi, e, i, \infty, trig/log functions, \cdot/\times,
// implicit multiplication, \pm, degrees, units and \text{...} decorations,
// \left/\right and spacing commands, intervals, tuples, sets, unions, bare
// comma lists, equations and inequalities, matrices (pmatrix/bmatrix/...) and
// plain-text answers (\text{east}, "odd").
//
// Every step is bounded by ParseLimits: input length, recursion depth, node
// count and digits per number. Exceeding one is a ResourceExhausted error;
// malformed input is InvalidArgument naming the byte offset. Stateless and
// thread-safe (each call uses only its arguments).
#ifndef RLVR_VERIFIERS_MATH_PARSER_H_
#define RLVR_VERIFIERS_MATH_PARSER_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "verifiers/math/expr.h"

namespace rlvr::verifiers::math {

struct ParseLimits {
  int32_t max_input_bytes = 2048;
  int32_t max_depth = 64;
  int32_t max_nodes = 1024;
  int32_t max_digits = 256;  // digits in one number literal
};

// Parses `input` into `*tree` (cleared first; its capacity is reused). On error
// `*tree` is left in an unspecified but valid state.
absl::Status ParseMath(std::string_view input, const ParseLimits &limits, Tree *tree);

}  // namespace rlvr::verifiers::math

#endif  // RLVR_VERIFIERS_MATH_PARSER_H_
