// Evaluation of parsed answers (expr.h): exactly over the Gaussian rationals
// Q(i) with GMP, or numerically over the complex numbers with MPFR at
// kNumericBits of precision.
//
// Both evaluators are bounded: integer powers are computed exactly only while
// the result stays under kMaxExactBits bits, factorials and binomials only for
// small arguments, and every call visits at most EvalContext::max_visits nodes.
// Anything outside those bounds (or not rational: pi, sqrt(2), variables,
// functions) makes EvalExact return false; EvalNumeric returns false for values
// it cannot compute (unknown variable, domain error, overflow to infinity where
// the input has no \infty, NaN).
//
// ± nodes (kPlusMinus) take the sign chosen by bit k of EvalContext::pm_mask,
// where k is the node's rank among the ± nodes of the tree in index order (at
// most kMaxPlusMinus of them).
//
// Thread-safe: no shared mutable state (MPFR's constant caches are
// thread-local).
#ifndef RLVR_VERIFIERS_MATH_EVALUATE_H_
#define RLVR_VERIFIERS_MATH_EVALUATE_H_

#include <gmpxx.h>
#include <mpfr.h>

#include <cstdint>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "verifiers/math/expr.h"

namespace rlvr::verifiers::math {

inline constexpr mpfr_prec_t kNumericBits = 128;
inline constexpr int64_t kMaxExactBits = 1 << 16;
inline constexpr int kMaxPlusMinus = 4;

// A value of a symbol at one evaluation point.
struct SymbolValue {
  std::string_view name;
  double value;
};

struct EvalContext {
  // A percent sign divides by 100 when true, and is ignored when false ("25%"
  // against "25").
  bool percent_as_fraction = false;
  uint32_t pm_mask = 0;
  absl::InlinedVector<int32_t, kMaxPlusMinus> pm_nodes;  // ± node ids, in rank order
  absl::InlinedVector<SymbolValue, 8> symbols;           // for EvalNumeric
  int32_t max_visits = 4096;
};

// Exact value a + b i.
struct QValue {
  mpq_class re;
  mpq_class im;
};

// A complex number with MPFR parts; owns its limbs.
class Complex {
 public:
  Complex() {
    mpfr_init2(re, kNumericBits);
    mpfr_init2(im, kNumericBits);
    mpfr_set_zero(re, 1);
    mpfr_set_zero(im, 1);
  }
  ~Complex() {
    mpfr_clear(re);
    mpfr_clear(im);
  }
  Complex(const Complex &) = delete;
  Complex &operator=(const Complex &) = delete;

  bool IsReal() const { return mpfr_zero_p(im) != 0; }
  bool IsFinite() const { return mpfr_number_p(re) && mpfr_number_p(im); }

  mpfr_t re;
  mpfr_t im;
};

// Collects the ids of ± nodes in the subtree at `node` (at most kMaxPlusMinus;
// returns false if there are more).
bool CollectPlusMinus(const Tree &tree, int32_t node,
                      absl::InlinedVector<int32_t, kMaxPlusMinus> *out);

// Collects the distinct symbol names of the subtree at `node` into `names`
// (false past `max`).
bool CollectSymbols(const Tree &tree, int32_t node, absl::InlinedVector<std::string_view, 8> *names,
                    size_t max);

// True if the subtree at `node` contains a node of kind `kind`.
bool Contains(const Tree &tree, int32_t node, NodeKind kind);

bool EvalExact(const Tree &tree, int32_t node, const EvalContext &ctx, QValue *out);
bool EvalNumeric(const Tree &tree, int32_t node, const EvalContext &ctx, Complex *out);

}  // namespace rlvr::verifiers::math

#endif  // RLVR_VERIFIERS_MATH_EVALUATE_H_
