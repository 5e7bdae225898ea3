// Decides whether a predicted answer equals a gold answer, both parsed into
// Trees (parser.h).
//
// Scalars: exact comparison over Q(i) when both sides are rational (GMP);
// otherwise randomized identity testing: both sides are evaluated with MPFR at
// several random points (the same values for same-named variables) and must
// agree to ~25 significant digits at every point. A decimal prediction that
// rounds the gold value (3.14 for \pi, 0.333 for 1/3) counts when it has at
// least `rounded_decimal_min_digits` significant digits. Percent signs are
// compared both ways ("25%" equals "25" and "0.25"). Structures: bare lists and
// sets are order-insensitive multisets; tuples, intervals and matrices are
// ordered and their brackets (open/closed ends) must match; "x = 3" equals "3";
// equations equal up to a non-zero factor (2x + 2y = 2 equals x + y = 1); a ± b
// is the list {a + b, a - b}. Text answers compare case- and
// punctuation-insensitively.
//
// Every comparison is bounded (list sizes, ± expansions, evaluation visits).
// Thread-safe.
#ifndef RLVR_VERIFIERS_MATH_EQUIVALENCE_H_
#define RLVR_VERIFIERS_MATH_EQUIVALENCE_H_

#include <cstdint>

#include "verifiers/math/expr.h"

namespace rlvr::verifiers::math {

struct CompareOptions {
  // Extra relative tolerance for numeric values (0: exact for rationals, ~1e-25
  // otherwise).
  double rel_tol = 0.0;
  // A decimal prediction that equals the gold value rounded to its decimal
  // places is correct if it has at least this many significant digits; 0
  // disables the rule.
  int32_t rounded_decimal_min_digits = 3;
  // Random points for expressions with variables.
  int32_t num_points = 3;
};

enum class Comparison : uint8_t {
  kEqual,
  kDifferent,
  kUndecidable,  // a value could not be computed (overflow, unsupported
                 // function, ...)
};

Comparison CompareAnswers(const Tree &gold, const Tree &pred, const CompareOptions &options);

}  // namespace rlvr::verifiers::math

#endif  // RLVR_VERIFIERS_MATH_EQUIVALENCE_H_
