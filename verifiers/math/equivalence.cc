#include "verifiers/math/equivalence.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "verifiers/math/evaluate.h"

namespace rlvr::verifiers::math {
namespace {

constexpr size_t kMaxItems = 64;
constexpr int32_t kMaxScalarComparisons = 600;
// Agreement needed between two MPFR evaluations (128-bit) of equal expressions.
constexpr double kNumericTol = 1e-25;

// One element of a collection: a subtree and, for subtrees with ± nodes, the
// sign choice.
struct Item {
  int32_t node;
  uint32_t mask;
  bool has_pm;
};

using Items = absl::InlinedVector<Item, 8>;

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A reproducible value in [0.5, 2.5) for variable `name` at evaluation point
// `k`. Away from 0 and 1 so that x^2 and x, or log x and 0, are told apart.
double PointValue(std::string_view name, int k) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  uint64_t r = SplitMix(h ^ SplitMix(static_cast<uint64_t>(k) + 17));
  return 0.5 + 2.0 * static_cast<double>(r >> 11) / 9007199254740992.0;
}

bool IsCollection(NodeKind k) {
  return k == NodeKind::kList || k == NodeKind::kSet || k == NodeKind::kBracket ||
         k == NodeKind::kUnion || k == NodeKind::kMatrix;
}

// Significant digits and decimal places of a decimal literal (possibly
// negated); false if the node is not one.
bool DecimalLiteral(const Tree &t, int32_t node, int *decimals, int *significant) {
  const Node *n = &t.node(node);
  if (n->kind == NodeKind::kNeg) {
    node = t.kid(node, 0);
    n = &t.node(node);
  }
  if (n->kind != NodeKind::kNumber || n->op != kNumDecimalPoint) return false;
  std::string_view s = t.NodeText(node);
  size_t point = s.find('.');
  *decimals = static_cast<int>(s.size() - point - 1);
  std::string digits;
  for (char c : s) {
    if (c != '.') digits.push_back(c);
  }
  size_t first = digits.find_first_not_of('0');
  size_t last = digits.find_last_not_of('0');
  *significant = first == std::string::npos ? 0 : static_cast<int>(last - first + 1);
  return true;
}

bool ContainsInfinity(const Tree &t, int32_t i) {
  const Node &n = t.node(i);
  if (n.kind == NodeKind::kConstant && Constant(n.op) == Constant::kInfinity) return true;
  for (int32_t k = 0; k < n.num_kids; ++k) {
    if (ContainsInfinity(t, t.kid(i, k))) return true;
  }
  return false;
}

std::string_view StripLeadingZeros(std::string_view s) {
  while (s.size() > 1 && s[0] == '0') s.remove_prefix(1);
  return s;
}

class Comparer {
 public:
  Comparer(const Tree &g, const Tree &p, const CompareOptions &o) : G_(g), P_(p), opt_(o) {}

  Comparison Compare(int32_t g, int32_t p) {
    const Node &gn = G_.node(g);
    const Node &pn = P_.node(p);
    bool g_rel = gn.kind == NodeKind::kRelation;
    bool p_rel = pn.kind == NodeKind::kRelation;
    if (IsAssignment(G_, g) && !p_rel) return Compare(G_.kid(g, 1), p);
    if (IsAssignment(P_, p) && !g_rel) return Compare(g, P_.kid(p, 1));
    if (gn.kind == NodeKind::kText || pn.kind == NodeKind::kText) return CompareText(g, p);
    if (g_rel && p_rel) return CompareRelations(g, p);
    if (g_rel && pn.kind == NodeKind::kBracket) return IntervalVsInequality(p, g, false);
    if (p_rel && gn.kind == NodeKind::kBracket) return IntervalVsInequality(g, p, true);
    if (g_rel || p_rel) return Comparison::kDifferent;
    bool g_empty = gn.kind == NodeKind::kConstant && Constant(gn.op) == Constant::kEmptySet;
    bool p_empty = pn.kind == NodeKind::kConstant && Constant(pn.op) == Constant::kEmptySet;
    if (g_empty || p_empty) return g_empty && p_empty ? Comparison::kEqual : Comparison::kDifferent;
    if (IsCollection(gn.kind) || IsCollection(pn.kind) || Contains(G_, g, NodeKind::kPlusMinus) ||
        Contains(P_, p, NodeKind::kPlusMinus)) {
      return CompareCollections(g, p);
    }
    return CompareScalar(Item{g, 0, false}, Item{p, 0, false});
  }

 private:
  // "x = 3", "x \in [1, 2]", "f(x) = 2x + 1": a variable (or a function of
  // variables, which the parser reads as a product of symbols) on the left.
  static bool IsAssignment(const Tree &t, int32_t i) {
    const Node &n = t.node(i);
    if (n.kind != NodeKind::kRelation) return false;
    Rel r = static_cast<Rel>(n.op);
    if (r != Rel::kEq && r != Rel::kIn) return false;
    int32_t lhs = t.kid(i, 0);
    const Node &l = t.node(lhs);
    if (l.kind == NodeKind::kSymbol) return true;
    if (l.kind != NodeKind::kMul || l.num_kids != 2) return false;
    return t.node(t.kid(lhs, 0)).kind == NodeKind::kSymbol &&
           t.node(t.kid(lhs, 1)).kind == NodeKind::kSymbol;
  }

  // ---- text ----
  static bool TextOf(const Tree &t, int32_t i, std::string *out) {
    const Node &n = t.node(i);
    switch (n.kind) {
      case NodeKind::kText:
        out->append(t.NodeText(i));
        return true;
      case NodeKind::kSymbol:
        for (char c : t.NodeText(i)) {
          if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
            out->push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
          }
        }
        return true;
      case NodeKind::kConstant:
        if (Constant(n.op) == Constant::kE) {
          out->push_back('e');
          return true;
        }
        if (Constant(n.op) == Constant::kI) {
          out->push_back('i');
          return true;
        }
        return false;
      case NodeKind::kMul:
        for (int32_t k = 0; k < n.num_kids; ++k) {
          if (!TextOf(t, t.kid(i, k), out)) return false;
        }
        return true;
      default:
        return false;
    }
  }

  Comparison CompareText(int32_t g, int32_t p) {
    std::string a, b;
    if (!TextOf(G_, g, &a) || !TextOf(P_, p, &b)) return Comparison::kDifferent;
    return !a.empty() && a == b ? Comparison::kEqual : Comparison::kDifferent;
  }

  // ---- relations ----
  struct RelParts {
    int32_t lhs;
    int32_t rhs;
    Rel rel;
  };

  static RelParts Normalize(const Tree &t, int32_t i) {
    RelParts r{t.kid(i, 0), t.kid(i, 1), static_cast<Rel>(t.node(i).op)};
    if (r.rel == Rel::kGt || r.rel == Rel::kGe) {
      std::swap(r.lhs, r.rhs);
      r.rel = r.rel == Rel::kGt ? Rel::kLt : Rel::kLe;
    }
    return r;
  }

  static bool SameSymbol(const Tree &a, int32_t i, const Tree &b, int32_t j) {
    return a.node(i).kind == NodeKind::kSymbol && b.node(j).kind == NodeKind::kSymbol &&
           a.NodeText(i) == b.NodeText(j);
  }

  Comparison Both(Comparison x, Comparison y) {
    if (x == Comparison::kEqual && y == Comparison::kEqual) return Comparison::kEqual;
    if (x == Comparison::kDifferent || y == Comparison::kDifferent) return Comparison::kDifferent;
    return Comparison::kUndecidable;
  }

  Comparison CompareRelations(int32_t g, int32_t p) {
    RelParts a = Normalize(G_, g);
    RelParts b = Normalize(P_, p);
    if (a.rel != b.rel) return Comparison::kDifferent;
    if (a.rel == Rel::kEq || a.rel == Rel::kNe) {
      if (SameSymbol(G_, a.lhs, P_, b.lhs)) return Compare(a.rhs, b.rhs);
      if (SameSymbol(G_, a.lhs, P_, b.rhs)) return Compare(a.rhs, b.lhs);
      if (SameSymbol(G_, a.rhs, P_, b.rhs)) return Compare(a.lhs, b.lhs);
      return Proportional(a, b);
    }
    return Both(Compare(a.lhs, b.lhs), Compare(a.rhs, b.rhs));
  }

  // ---- inequalities as intervals: x > 2 is (2, \infty), 1 < x \le 3 is (1, 3]
  // ----
  struct Bound {
    int32_t node;  // -1: infinite
    bool closed;
  };

  static bool IsStrictOrWeak(Rel r) { return r == Rel::kLt || r == Rel::kLe; }

  static bool AsInterval(const Tree &t, int32_t i, Bound *lo, Bound *hi) {
    const Node &n = t.node(i);
    int32_t inner = t.kid(i, 0);
    if (t.node(inner).kind == NodeKind::kRelation) {
      // a op1 x op2 b, both ops pointing the same way.
      Rel op1 = static_cast<Rel>(t.node(inner).op);
      Rel op2 = static_cast<Rel>(n.op);
      int32_t a = t.kid(inner, 0);
      int32_t x = t.kid(inner, 1);
      int32_t b = t.kid(i, 1);
      if (t.node(x).kind != NodeKind::kSymbol) return false;
      if (IsStrictOrWeak(op1) && IsStrictOrWeak(op2)) {
        *lo = {a, op1 == Rel::kLe};
        *hi = {b, op2 == Rel::kLe};
        return true;
      }
      if ((op1 == Rel::kGt || op1 == Rel::kGe) && (op2 == Rel::kGt || op2 == Rel::kGe)) {
        *lo = {b, op2 == Rel::kGe};
        *hi = {a, op1 == Rel::kGe};
        return true;
      }
      return false;
    }
    RelParts r = Normalize(t, i);
    if (!IsStrictOrWeak(r.rel)) return false;
    bool closed = r.rel == Rel::kLe;
    if (t.node(r.lhs).kind == NodeKind::kSymbol) {
      *lo = {-1, false};
      *hi = {r.rhs, closed};
      return true;
    }
    if (t.node(r.rhs).kind == NodeKind::kSymbol) {
      *lo = {r.lhs, closed};
      *hi = {-1, false};
      return true;
    }
    return false;
  }

  static bool IsInfinite(const Tree &t, int32_t i, bool negative) {
    const Node *n = &t.node(i);
    if (negative) {
      if (n->kind != NodeKind::kNeg) return false;
      n = &t.node(t.kid(i, 0));
    }
    return n->kind == NodeKind::kConstant && Constant(n->op) == Constant::kInfinity;
  }

  // `interval` is a bracket node of one tree, `inequality` a relation of the
  // other.
  Comparison IntervalVsInequality(int32_t interval, int32_t inequality, bool interval_is_gold) {
    const Tree &it = interval_is_gold ? G_ : P_;
    const Tree &rt = interval_is_gold ? P_ : G_;
    const Node &b = it.node(interval);
    if (b.num_kids != 2) return Comparison::kDifferent;
    Bound lo, hi;
    if (!AsInterval(rt, inequality, &lo, &hi)) return Comparison::kDifferent;
    int32_t ends[2] = {it.kid(interval, 0), it.kid(interval, 1)};
    Bound bounds[2] = {lo, hi};
    bool closed[2] = {b.op == '[', b.aux == ']'};
    Comparison result = Comparison::kEqual;
    for (int k = 0; k < 2; ++k) {
      if (bounds[k].node < 0) {
        if (!IsInfinite(it, ends[k], k == 0)) return Comparison::kDifferent;
        continue;
      }
      if (bounds[k].closed != closed[k]) return Comparison::kDifferent;
      Comparison c =
          interval_is_gold ? Compare(ends[k], bounds[k].node) : Compare(bounds[k].node, ends[k]);
      if (c == Comparison::kDifferent) return c;
      if (c == Comparison::kUndecidable) result = c;
    }
    return result;
  }

  // lhs - rhs of both equations agree up to a non-zero constant factor at every
  // point.
  Comparison Proportional(const RelParts &a, const RelParts &b) {
    const Node &al = G_.node(a.lhs);
    const Node &bl = P_.node(b.lhs);
    if (al.kind == NodeKind::kRelation || bl.kind == NodeKind::kRelation || IsCollection(al.kind) ||
        IsCollection(bl.kind) || IsCollection(G_.node(a.rhs).kind) ||
        IsCollection(P_.node(b.rhs).kind)) {
      return Comparison::kUndecidable;
    }
    EvalContext cg, cp;
    absl::InlinedVector<std::string_view, 8> names;
    if (!CollectSymbols(G_, a.lhs, &names, 8) || !CollectSymbols(G_, a.rhs, &names, 8) ||
        !CollectSymbols(P_, b.lhs, &names, 8) || !CollectSymbols(P_, b.rhs, &names, 8)) {
      return Comparison::kUndecidable;
    }
    Complex gl, gr, pl, pr, dg, dp, ratio, first_ratio;
    bool have_ratio = false;
    int points = names.empty() ? 1 : std::max(opt_.num_points, 2) + 1;
    for (int k = 0; k < points; ++k) {
      SetPoint(names, k, &cg);
      cp.symbols = cg.symbols;
      if (!EvalNumeric(G_, a.lhs, cg, &gl) || !EvalNumeric(G_, a.rhs, cg, &gr) ||
          !EvalNumeric(P_, b.lhs, cp, &pl) || !EvalNumeric(P_, b.rhs, cp, &pr)) {
        return Comparison::kUndecidable;
      }
      mpfr_sub(dg.re, gl.re, gr.re, MPFR_RNDN);
      mpfr_sub(dg.im, gl.im, gr.im, MPFR_RNDN);
      mpfr_sub(dp.re, pl.re, pr.re, MPFR_RNDN);
      mpfr_sub(dp.im, pl.im, pr.im, MPFR_RNDN);
      if (!dg.IsFinite() || !dp.IsFinite()) return Comparison::kUndecidable;
      bool zg = IsZero(dg, gl, gr);
      bool zp = IsZero(dp, pl, pr);
      if (zg != zp) return Comparison::kDifferent;
      if (zg) continue;
      Ratio(dp, dg, &ratio);
      if (!have_ratio) {
        mpfr_set(first_ratio.re, ratio.re, MPFR_RNDN);
        mpfr_set(first_ratio.im, ratio.im, MPFR_RNDN);
        have_ratio = true;
      } else if (!Close(ratio, first_ratio)) {
        return Comparison::kDifferent;
      }
    }
    return Comparison::kEqual;
  }

  static void Ratio(const Complex &a, const Complex &b, Complex *out) {
    // out = a / b for b != 0 (complex).
    MPFR_DECL_INIT(d, kNumericBits);
    MPFR_DECL_INIT(t, kNumericBits);
    mpfr_sqr(d, b.re, MPFR_RNDN);
    mpfr_sqr(t, b.im, MPFR_RNDN);
    mpfr_add(d, d, t, MPFR_RNDN);
    mpfr_mul(out->re, a.re, b.re, MPFR_RNDN);
    mpfr_mul(t, a.im, b.im, MPFR_RNDN);
    mpfr_add(out->re, out->re, t, MPFR_RNDN);
    mpfr_div(out->re, out->re, d, MPFR_RNDN);
    mpfr_mul(out->im, a.im, b.re, MPFR_RNDN);
    mpfr_mul(t, a.re, b.im, MPFR_RNDN);
    mpfr_sub(out->im, out->im, t, MPFR_RNDN);
    mpfr_div(out->im, out->im, d, MPFR_RNDN);
  }

  // |d| negligible next to the magnitudes it was computed from.
  static bool IsZero(const Complex &d, const Complex &x, const Complex &y) {
    MPFR_DECL_INIT(m, kNumericBits);
    MPFR_DECL_INIT(s, kNumericBits);
    mpfr_hypot(m, d.re, d.im, MPFR_RNDN);
    mpfr_hypot(s, x.re, x.im, MPFR_RNDN);
    MPFR_DECL_INIT(s2, kNumericBits);
    mpfr_hypot(s2, y.re, y.im, MPFR_RNDN);
    mpfr_max(s, s, s2, MPFR_RNDN);
    if (mpfr_cmp_ui(s, 1) < 0) mpfr_set_ui(s, 1, MPFR_RNDN);
    mpfr_mul_d(s, s, kNumericTol, MPFR_RNDN);
    return mpfr_lessequal_p(m, s);
  }

  // ---- collections ----
  struct Shape {
    enum Kind { kScalar, kUnordered, kTuple, kInterval, kMatrix, kUnion } kind;
    int32_t node;
  };

  Shape ShapeOf(const Tree &t, int32_t i) {
    const Node &n = t.node(i);
    switch (n.kind) {
      case NodeKind::kList:
      case NodeKind::kSet:
        return {Shape::kUnordered, i};
      case NodeKind::kBracket:
        return {n.op == '(' && n.aux == ')' ? Shape::kTuple : Shape::kInterval, i};
      case NodeKind::kMatrix:
        return {Shape::kMatrix, i};
      case NodeKind::kUnion:
        return {Shape::kUnion, i};
      default:
        return {Contains(t, i, NodeKind::kPlusMinus) ? Shape::kUnordered : Shape::kScalar, i};
    }
  }

  // Elements of a collection, with ± subtrees expanded into their sign choices.
  bool ItemsOf(const Tree &t, int32_t i, Items *out) {
    const Node &n = t.node(i);
    bool container = n.kind == NodeKind::kList || n.kind == NodeKind::kSet ||
                     n.kind == NodeKind::kBracket || n.kind == NodeKind::kMatrix ||
                     n.kind == NodeKind::kUnion;
    if (container) {
      for (int32_t k = 0; k < n.num_kids; ++k) {
        if (!Expand(t, t.kid(i, k), out)) return false;
      }
      return true;
    }
    return Expand(t, i, out);
  }

  bool Expand(const Tree &t, int32_t i, Items *out) {
    absl::InlinedVector<int32_t, kMaxPlusMinus> pm;
    const Node &n = t.node(i);
    bool scalar = !IsCollection(n.kind) && n.kind != NodeKind::kRelation;
    if (!scalar || !CollectPlusMinus(t, i, &pm)) {
      if (scalar) return false;
      if (out->size() >= kMaxItems) return false;
      out->push_back(Item{i, 0, false});
      return true;
    }
    uint32_t variants = 1u << pm.size();
    for (uint32_t m = 0; m < variants; ++m) {
      if (out->size() >= kMaxItems) return false;
      out->push_back(Item{i, m, !pm.empty()});
    }
    return true;
  }

  Comparison CompareItems(const Item &a, const Item &b) {
    if (!a.has_pm && !b.has_pm) return Compare(a.node, b.node);
    return CompareScalar(a, b);
  }

  Comparison Ordered(const Items &a, const Items &b) {
    if (a.size() != b.size() || a.empty()) return Comparison::kDifferent;
    Comparison result = Comparison::kEqual;
    for (size_t k = 0; k < a.size(); ++k) {
      Comparison c = CompareItems(a[k], b[k]);
      if (c == Comparison::kDifferent) return c;
      if (c == Comparison::kUndecidable) result = c;
    }
    return result;
  }

  Comparison Unordered(const Items &a, const Items &b) {
    if (a.size() != b.size() || a.empty()) return Comparison::kDifferent;
    absl::InlinedVector<bool, 16> used(b.size(), false);
    bool undecided = false;
    for (size_t i = 0; i < a.size(); ++i) {
      const Item &x = a[i];
      bool matched = false;
      // Same position first: most lists are written in the same order.
      for (size_t step = 0; step <= b.size() && !matched; ++step) {
        size_t k = step == 0 ? i : step - 1;
        if (step > 0 && k == i) continue;
        if (used[k]) continue;
        Comparison c = CompareItems(x, b[k]);
        if (c == Comparison::kEqual) {
          used[k] = true;
          matched = true;
        } else if (c == Comparison::kUndecidable) {
          undecided = true;
        }
      }
      if (!matched) return undecided ? Comparison::kUndecidable : Comparison::kDifferent;
    }
    return Comparison::kEqual;
  }

  Comparison CompareCollections(int32_t g, int32_t p) {
    Shape a = ShapeOf(G_, g);
    Shape b = ShapeOf(P_, p);
    Items ga, pb;
    if (!ItemsOf(G_, g, &ga) || !ItemsOf(P_, p, &pb)) return Comparison::kUndecidable;
    const Node &gn = G_.node(g);
    const Node &pn = P_.node(p);
    auto is_vector = [](const Tree &t, int32_t i) {
      const Node &n = t.node(i);
      return n.aux == 1 || n.aux == n.num_kids;
    };
    switch (a.kind) {
      case Shape::kInterval:
        if (b.kind != Shape::kInterval || gn.op != pn.op || gn.aux != pn.aux) {
          return Comparison::kDifferent;
        }
        return Ordered(ga, pb);
      case Shape::kTuple:
        if (b.kind == Shape::kTuple ||
            (b.kind == Shape::kUnordered && pn.kind == NodeKind::kList)) {
          return Ordered(ga, pb);
        }
        if (b.kind == Shape::kMatrix && is_vector(P_, p)) return Ordered(ga, pb);
        return Comparison::kDifferent;
      case Shape::kMatrix:
        if (b.kind == Shape::kMatrix) {
          if (gn.aux != pn.aux) return Comparison::kDifferent;
          return Ordered(ga, pb);
        }
        if (b.kind == Shape::kTuple && is_vector(G_, g)) return Ordered(ga, pb);
        return Comparison::kDifferent;
      case Shape::kUnion:
        if (b.kind != Shape::kUnion) return Comparison::kDifferent;
        return Unordered(ga, pb);
      case Shape::kUnordered:
        if (b.kind == Shape::kUnordered || b.kind == Shape::kScalar ||
            (b.kind == Shape::kTuple && gn.kind != NodeKind::kSet)) {
          return Unordered(ga, pb);
        }
        return Comparison::kDifferent;
      case Shape::kScalar:
        if (b.kind != Shape::kUnordered) return Comparison::kDifferent;
        if (pn.kind == NodeKind::kList && pb.size() > 1) {
          // The same answer written twice ("\boxed{15\frac{39}{40}} or
          // \boxed{\frac{639}{40}}").
          Comparison all = Comparison::kEqual;
          for (const Item &x : pb) {
            Comparison c = CompareItems(ga[0], x);
            if (c != Comparison::kEqual) {
              all = c;
              break;
            }
          }
          if (all == Comparison::kEqual) return all;
        }
        return Unordered(ga, pb);
    }
    return Comparison::kDifferent;
  }

  // ---- scalars ----
  Comparison CompareBase(int32_t g, int32_t p) {
    const Node &gn = G_.node(g);
    const Node &pn = P_.node(p);
    bool gb = gn.kind == NodeKind::kBaseNumber;
    bool pb = pn.kind == NodeKind::kBaseNumber;
    if (gb && pb) {
      return gn.aux == pn.aux &&
                     StripLeadingZeros(G_.NodeText(g)) == StripLeadingZeros(P_.NodeText(p))
                 ? Comparison::kEqual
                 : Comparison::kDifferent;
    }
    // A base-b answer written without its subscript: the digits must match.
    const Node &other = gb ? pn : gn;
    if (other.kind != NodeKind::kNumber || other.op != 0) return Comparison::kDifferent;
    return StripLeadingZeros(G_.NodeText(g)) == StripLeadingZeros(P_.NodeText(p))
               ? Comparison::kEqual
               : Comparison::kDifferent;
  }

  void SetPoint(const absl::InlinedVector<std::string_view, 8> &names, int k, EvalContext *ctx) {
    ctx->symbols.clear();
    for (std::string_view n : names) ctx->symbols.push_back(SymbolValue{n, PointValue(n, k)});
  }

  bool Close(const Complex &a, const Complex &b) {
    if (!a.IsFinite() || !b.IsFinite()) {
      return mpfr_equal_p(a.re, b.re) && mpfr_equal_p(a.im, b.im);
    }
    MPFR_DECL_INIT(dr, kNumericBits);
    MPFR_DECL_INIT(di, kNumericBits);
    MPFR_DECL_INIT(d, kNumericBits);
    MPFR_DECL_INIT(s, kNumericBits);
    MPFR_DECL_INIT(s2, kNumericBits);
    mpfr_sub(dr, a.re, b.re, MPFR_RNDN);
    mpfr_sub(di, a.im, b.im, MPFR_RNDN);
    mpfr_hypot(d, dr, di, MPFR_RNDN);
    mpfr_hypot(s, a.re, a.im, MPFR_RNDN);
    mpfr_hypot(s2, b.re, b.im, MPFR_RNDN);
    mpfr_max(s, s, s2, MPFR_RNDN);
    if (mpfr_cmp_ui(s, 1) < 0) mpfr_set_ui(s, 1, MPFR_RNDN);
    mpfr_mul_d(s, s, std::max(kNumericTol, opt_.rel_tol), MPFR_RNDN);
    return mpfr_lessequal_p(d, s);
  }

  // A decimal that rounds the other (real) value to its decimal places.
  bool RoundsTo(const Complex &decimal, const Complex &value, int decimals) {
    if (!decimal.IsReal() || !value.IsReal() || !value.IsFinite()) return false;
    MPFR_DECL_INIT(d, kNumericBits);
    MPFR_DECL_INIT(half, kNumericBits);
    mpfr_sub(d, decimal.re, value.re, MPFR_RNDN);
    mpfr_abs(d, d, MPFR_RNDN);
    mpfr_set_ui(half, 10, MPFR_RNDN);
    mpfr_pow_si(half, half, -decimals, MPFR_RNDN);
    mpfr_div_2ui(half, half, 1, MPFR_RNDN);
    return mpfr_less_p(d, half);
  }

  void PrepareContext(const Tree &t, const Item &item, bool percent, EvalContext *ctx) {
    ctx->pm_nodes.clear();
    if (item.has_pm) CollectPlusMinus(t, item.node, &ctx->pm_nodes);
    ctx->pm_mask = item.mask;
    ctx->percent_as_fraction = percent;
  }

  Comparison CompareScalar(const Item &g, const Item &p) {
    if (++scalar_comparisons_ > kMaxScalarComparisons) return Comparison::kUndecidable;
    if (G_.node(g.node).kind == NodeKind::kBaseNumber ||
        P_.node(p.node).kind == NodeKind::kBaseNumber) {
      return CompareBase(g.node, p.node);
    }
    if (IsCollection(G_.node(g.node).kind) || IsCollection(P_.node(p.node).kind) ||
        G_.node(g.node).kind == NodeKind::kRelation ||
        P_.node(p.node).kind == NodeKind::kRelation) {
      return Comparison::kDifferent;
    }
    absl::InlinedVector<std::string_view, 8> names;
    if (!CollectSymbols(G_, g.node, &names, 8) || !CollectSymbols(P_, p.node, &names, 8)) {
      return Comparison::kUndecidable;
    }
    bool percent =
        Contains(G_, g.node, NodeKind::kPercent) || Contains(P_, p.node, NodeKind::kPercent);
    Comparison first = CompareValues(g, p, names, false);
    if (first == Comparison::kEqual || !percent) return first;
    Comparison second = CompareValues(g, p, names, true);
    if (second == Comparison::kEqual) return second;
    return first == Comparison::kDifferent ? first : second;
  }

  Comparison CompareValues(const Item &g, const Item &p,
                           const absl::InlinedVector<std::string_view, 8> &names, bool percent) {
    EvalContext cg, cp;
    PrepareContext(G_, g, percent, &cg);
    PrepareContext(P_, p, percent, &cp);
    bool has_inf = ContainsInfinity(G_, g.node) || ContainsInfinity(P_, p.node);
    if (names.empty()) {
      QValue a, b;
      bool exact_a = EvalExact(G_, g.node, cg, &a);
      bool exact_b = exact_a && EvalExact(P_, p.node, cp, &b);
      if (exact_a && exact_b && a.re == b.re && a.im == b.im) return Comparison::kEqual;
      Complex x, y;
      if (!EvalNumeric(G_, g.node, cg, &x)) return Comparison::kUndecidable;
      if (!EvalNumeric(P_, p.node, cp, &y)) return Comparison::kUndecidable;
      if ((!x.IsFinite() || !y.IsFinite()) && !has_inf) return Comparison::kUndecidable;
      if (!(exact_a && exact_b) && Close(x, y)) return Comparison::kEqual;
      int decimals, significant;
      if (opt_.rounded_decimal_min_digits > 0) {
        if (DecimalLiteral(P_, p.node, &decimals, &significant) &&
            significant >= opt_.rounded_decimal_min_digits && RoundsTo(y, x, decimals)) {
          return Comparison::kEqual;
        }
        if (!DecimalLiteral(P_, p.node, &decimals, &significant) &&
            DecimalLiteral(G_, g.node, &decimals, &significant) &&
            significant >= opt_.rounded_decimal_min_digits && RoundsTo(x, y, decimals)) {
          return Comparison::kEqual;
        }
      }
      if (opt_.rel_tol > 0 && Close(x, y)) return Comparison::kEqual;
      return Comparison::kDifferent;
    }
    int usable = 0;
    Complex x, y;
    for (int k = 0; k < std::max(1, opt_.num_points); ++k) {
      SetPoint(names, k, &cg);
      cp.symbols = cg.symbols;
      bool okx = EvalNumeric(G_, g.node, cg, &x) && x.IsFinite();
      bool oky = EvalNumeric(P_, p.node, cp, &y) && y.IsFinite();
      if (okx != oky) return Comparison::kDifferent;
      if (!okx) continue;
      ++usable;
      if (!Close(x, y)) return Comparison::kDifferent;
    }
    return usable > 0 ? Comparison::kEqual : Comparison::kUndecidable;
  }

  const Tree &G_;
  const Tree &P_;
  const CompareOptions &opt_;
  int32_t scalar_comparisons_ = 0;
};

}  // namespace

Comparison CompareAnswers(const Tree &gold, const Tree &pred, const CompareOptions &options) {
  if (gold.root < 0 || pred.root < 0) return Comparison::kUndecidable;
  Comparer c(gold, pred, options);
  return c.Compare(gold.root, pred.root);
}

}  // namespace rlvr::verifiers::math
