#include "verifiers/math/evaluate.h"

#include <cstdlib>
#include <cstring>

namespace rlvr::verifiers::math {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int64_t Bits(const mpq_class &q) {
  return static_cast<int64_t>(mpz_sizeinbase(q.get_num_mpz_t(), 2) +
                              mpz_sizeinbase(q.get_den_mpz_t(), 2));
}

bool TooBig(const QValue &v) { return Bits(v.re) + Bits(v.im) > kMaxExactBits; }

// Splits a literal "12.50e-3" into its digits "1250" and a power of ten (-5).
bool SplitDecimal(std::string_view s, char *digits, size_t cap, int64_t *exp10) {
  size_t n = 0;
  int64_t decimals = 0;
  bool after_point = false;
  size_t i = 0;
  for (; i < s.size() && s[i] != 'e'; ++i) {
    if (s[i] == '.') {
      after_point = true;
      continue;
    }
    if (!IsDigit(s[i]) || n + 1 >= cap) return false;
    digits[n++] = s[i];
    if (after_point) ++decimals;
  }
  if (n == 0) return false;
  digits[n] = 0;
  int64_t e = 0;
  if (i < s.size()) {
    ++i;
    bool neg = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    for (; i < s.size(); ++i) {
      if (!IsDigit(s[i])) return false;
      e = e * 10 + (s[i] - '0');
      if (e > 100000) return false;
    }
    if (neg) e = -e;
  }
  *exp10 = e - decimals;
  return true;
}

bool ParseLiteral(std::string_view s, mpq_class *out) {
  char digits[512];
  int64_t exp10;
  if (!SplitDecimal(s, digits, sizeof(digits), &exp10)) return false;
  if (exp10 > 2000 || exp10 < -2000) return false;
  mpz_class m;
  if (m.set_str(digits, 10) != 0) return false;
  mpz_class p;
  mpz_ui_pow_ui(p.get_mpz_t(), 10, static_cast<unsigned long>(exp10 < 0 ? -exp10 : exp10));
  if (exp10 >= 0) {
    *out = mpq_class(m * p);
  } else {
    *out = mpq_class(m, p);
    out->canonicalize();
  }
  return true;
}

int PlusMinusRank(const EvalContext &ctx, int32_t node) {
  for (size_t k = 0; k < ctx.pm_nodes.size(); ++k) {
    if (ctx.pm_nodes[k] == node) return static_cast<int>(k);
  }
  return -1;
}

// ---------------- exact ----------------

class Exact {
 public:
  Exact(const Tree &t, const EvalContext &ctx) : t_(t), ctx_(ctx) {}

  bool Eval(int32_t i, QValue *out) {
    if (++visits_ > ctx_.max_visits) return false;
    const Node &n = t_.node(i);
    switch (n.kind) {
      case NodeKind::kNumber:
        out->im = 0;
        return ParseLiteral(t_.NodeText(i), &out->re);
      case NodeKind::kConstant:
        if (static_cast<Constant>(n.op) != Constant::kI) return false;
        out->re = 0;
        out->im = 1;
        return true;
      case NodeKind::kAdd: {
        if (!Eval(t_.kid(i, 0), out)) return false;
        QValue x;
        for (int32_t k = 1; k < n.num_kids; ++k) {
          if (!Eval(t_.kid(i, k), &x)) return false;
          out->re += x.re;
          out->im += x.im;
          if (TooBig(*out)) return false;
        }
        return true;
      }
      case NodeKind::kMul: {
        if (!Eval(t_.kid(i, 0), out)) return false;
        QValue x;
        for (int32_t k = 1; k < n.num_kids; ++k) {
          if (!Eval(t_.kid(i, k), &x)) return false;
          Mul(out, x);
          if (TooBig(*out)) return false;
        }
        return true;
      }
      case NodeKind::kNeg:
        if (!Eval(t_.kid(i, 0), out)) return false;
        out->re = -out->re;
        out->im = -out->im;
        return true;
      case NodeKind::kDiv: {
        QValue d;
        if (!Eval(t_.kid(i, 0), out) || !Eval(t_.kid(i, 1), &d)) return false;
        return Div(out, d) && !TooBig(*out);
      }
      case NodeKind::kPercent:
        if (!Eval(t_.kid(i, 0), out)) return false;
        if (ctx_.percent_as_fraction) {
          out->re /= 100;
          out->im /= 100;
        }
        return true;
      case NodeKind::kPlusMinus: {
        int rank = PlusMinusRank(ctx_, i);
        if (rank < 0) return false;
        QValue b;
        if (!Eval(t_.kid(i, 0), out) || !Eval(t_.kid(i, 1), &b)) return false;
        bool minus = ((ctx_.pm_mask >> rank) & 1) != (n.op == 1 ? 1u : 0u);
        if (minus) {
          out->re -= b.re;
          out->im -= b.im;
        } else {
          out->re += b.re;
          out->im += b.im;
        }
        return true;
      }
      case NodeKind::kPow: {
        QValue e;
        if (!Eval(t_.kid(i, 0), out) || !Eval(t_.kid(i, 1), &e)) return false;
        return Pow(out, e);
      }
      case NodeKind::kSqrt: {
        if (!Eval(t_.kid(i, 0), out)) return false;
        mpz_class index = 2;
        if (n.num_kids == 2) {
          QValue k;
          if (!Eval(t_.kid(i, 1), &k) || k.im != 0 || k.re.get_den() != 1) return false;
          index = k.re.get_num();
        }
        if (index < 2 || index > 64) return false;
        return Root(out, index.get_ui());
      }
      case NodeKind::kFactorial: {
        if (!Eval(t_.kid(i, 0), out) || out->im != 0 || out->re.get_den() != 1) return false;
        if (out->re < 0 || out->re > 2000) return false;
        mpz_class f;
        mpz_fac_ui(f.get_mpz_t(), out->re.get_num().get_ui());
        out->re = f;
        return true;
      }
      case NodeKind::kBinom: {
        QValue k;
        if (!Eval(t_.kid(i, 0), out) || !Eval(t_.kid(i, 1), &k)) return false;
        if (out->im != 0 || k.im != 0 || out->re.get_den() != 1 || k.re.get_den() != 1) {
          return false;
        }
        if (out->re < 0 || out->re > 100000 || k.re < 0 || k.re > 2000) return false;
        mpz_class b;
        mpz_bin_uiui(b.get_mpz_t(), out->re.get_num().get_ui(), k.re.get_num().get_ui());
        out->re = b;
        return true;
      }
      case NodeKind::kAbs:
        if (!Eval(t_.kid(i, 0), out) || out->im != 0) return false;
        out->re = abs(out->re);
        return true;
      default:
        return false;
    }
  }

 private:
  static void Mul(QValue *a, const QValue &b) {
    if (a->im == 0 && b.im == 0) {
      a->re *= b.re;
      return;
    }
    mpq_class re = a->re * b.re - a->im * b.im;
    mpq_class im = a->re * b.im + a->im * b.re;
    a->re = re;
    a->im = im;
  }

  static bool Div(QValue *a, const QValue &b) {
    if (b.im == 0) {
      if (b.re == 0) return false;
      a->re /= b.re;
      a->im /= b.re;
      return true;
    }
    mpq_class d = b.re * b.re + b.im * b.im;
    mpq_class re = (a->re * b.re + a->im * b.im) / d;
    mpq_class im = (a->im * b.re - a->re * b.im) / d;
    a->re = re;
    a->im = im;
    return true;
  }

  // Exact q-th root of a non-negative rational, if there is one.
  static bool RationalRoot(const mpq_class &x, unsigned long q, mpq_class *out) {
    mpz_class num, den;
    if (mpz_root(num.get_mpz_t(), x.get_num_mpz_t(), q) == 0) return false;
    if (mpz_root(den.get_mpz_t(), x.get_den_mpz_t(), q) == 0) return false;
    *out = mpq_class(num, den);
    return true;
  }

  static bool Root(QValue *v, unsigned long q) {
    if (v->im != 0) return false;
    if (v->re >= 0) return RationalRoot(v->re, q, &v->re);
    mpq_class neg = -v->re;
    mpq_class r;
    if (!RationalRoot(neg, q, &r)) return false;
    if (q % 2 == 1) {
      v->re = -r;
    } else if (q == 2) {
      v->re = 0;
      v->im = r;
    } else {
      return false;
    }
    return true;
  }

  bool Pow(QValue *b, const QValue &e) {
    if (e.im != 0) return false;
    if (e.re.get_den() != 1) {
      // Rational exponent p/q: exact only for perfect q-th powers.
      if (e.re.get_den() > 64 || abs(e.re.get_num()) > 4096) return false;
      if (!Root(b, e.re.get_den().get_ui())) return false;
      QValue p;
      p.re = e.re.get_num();
      return Pow(b, p);
    }
    const mpz_class &n = e.re.get_num();
    if (abs(n) > 100000) return false;
    long k = n.get_si();
    if (b->re == 0 && b->im == 0) return k > 0;  // 0^0 and 0^-k are not answers
    int64_t bits = Bits(b->re) + Bits(b->im);
    if (bits * (k < 0 ? -k : k) > kMaxExactBits + 64) return false;
    unsigned long u = static_cast<unsigned long>(k < 0 ? -k : k);
    if (b->im == 0) {
      mpz_class num, den;
      mpz_pow_ui(num.get_mpz_t(), b->re.get_num_mpz_t(), u);
      mpz_pow_ui(den.get_mpz_t(), b->re.get_den_mpz_t(), u);
      b->re = mpq_class(num, den);
    } else {
      QValue result;
      result.re = 1;
      QValue base = *b;
      while (u > 0) {
        if (u & 1) Mul(&result, base);
        u >>= 1;
        if (u) Mul(&base, base);
      }
      *b = result;
    }
    if (k < 0) {
      QValue one;
      one.re = 1;
      if (!Div(&one, *b)) return false;
      *b = one;
    }
    return !TooBig(*b);
  }

  const Tree &t_;
  const EvalContext &ctx_;
  int32_t visits_ = 0;
};

// ---------------- numeric ----------------

constexpr mpfr_rnd_t kRnd = MPFR_RNDN;

void Set(Complex *out, const Complex &a) {
  mpfr_set(out->re, a.re, kRnd);
  mpfr_set(out->im, a.im, kRnd);
}

void CMul(Complex *out, const Complex &a, const Complex &b) {
  if (a.IsReal() && b.IsReal()) {
    mpfr_mul(out->re, a.re, b.re, kRnd);
    mpfr_set_zero(out->im, 1);
    return;
  }
  MPFR_DECL_INIT(t1, kNumericBits);
  MPFR_DECL_INIT(t2, kNumericBits);
  MPFR_DECL_INIT(re, kNumericBits);
  mpfr_mul(t1, a.re, b.re, kRnd);
  mpfr_mul(t2, a.im, b.im, kRnd);
  mpfr_sub(re, t1, t2, kRnd);
  mpfr_mul(t1, a.re, b.im, kRnd);
  mpfr_mul(t2, a.im, b.re, kRnd);
  mpfr_add(out->im, t1, t2, kRnd);
  mpfr_set(out->re, re, kRnd);
}

bool CDiv(Complex *out, const Complex &a, const Complex &b) {
  if (b.IsReal()) {
    if (mpfr_zero_p(b.re)) return false;
    mpfr_div(out->re, a.re, b.re, kRnd);
    mpfr_div(out->im, a.im, b.re, kRnd);
    return true;
  }
  MPFR_DECL_INIT(d, kNumericBits);
  MPFR_DECL_INIT(t1, kNumericBits);
  MPFR_DECL_INIT(t2, kNumericBits);
  MPFR_DECL_INIT(re, kNumericBits);
  mpfr_sqr(t1, b.re, kRnd);
  mpfr_sqr(t2, b.im, kRnd);
  mpfr_add(d, t1, t2, kRnd);
  mpfr_mul(t1, a.re, b.re, kRnd);
  mpfr_mul(t2, a.im, b.im, kRnd);
  mpfr_add(re, t1, t2, kRnd);
  mpfr_div(re, re, d, kRnd);
  mpfr_mul(t1, a.im, b.re, kRnd);
  mpfr_mul(t2, a.re, b.im, kRnd);
  mpfr_sub(out->im, t1, t2, kRnd);
  mpfr_div(out->im, out->im, d, kRnd);
  mpfr_set(out->re, re, kRnd);
  return true;
}

void CExp(Complex *out, const Complex &z) {
  MPFR_DECL_INIT(m, kNumericBits);
  MPFR_DECL_INIT(s, kNumericBits);
  MPFR_DECL_INIT(c, kNumericBits);
  mpfr_exp(m, z.re, kRnd);
  mpfr_sin_cos(s, c, z.im, kRnd);
  mpfr_mul(out->re, m, c, kRnd);
  mpfr_mul(out->im, m, s, kRnd);
}

bool CLog(Complex *out, const Complex &z) {
  if (mpfr_zero_p(z.re) && mpfr_zero_p(z.im)) return false;
  MPFR_DECL_INIT(r, kNumericBits);
  MPFR_DECL_INIT(a, kNumericBits);
  mpfr_hypot(r, z.re, z.im, kRnd);
  mpfr_atan2(a, z.im, z.re, kRnd);
  mpfr_log(out->re, r, kRnd);
  mpfr_set(out->im, a, kRnd);
  return true;
}

void CSqrt(Complex *out, const Complex &z) {
  if (z.IsReal() && mpfr_sgn(z.re) >= 0) {
    mpfr_sqrt(out->re, z.re, kRnd);
    mpfr_set_zero(out->im, 1);
    return;
  }
  if (z.IsReal()) {
    mpfr_neg(out->im, z.re, kRnd);
    mpfr_sqrt(out->im, out->im, kRnd);
    mpfr_set_zero(out->re, 1);
    return;
  }
  // sqrt(a+bi) = sqrt((r+a)/2) + i sign(b) sqrt((r-a)/2)
  MPFR_DECL_INIT(r, kNumericBits);
  MPFR_DECL_INIT(t, kNumericBits);
  mpfr_hypot(r, z.re, z.im, kRnd);
  int sign = mpfr_sgn(z.im);
  mpfr_sub(t, r, z.re, kRnd);
  mpfr_div_2ui(t, t, 1, kRnd);
  mpfr_sqrt(t, t, kRnd);
  mpfr_add(out->re, r, z.re, kRnd);
  mpfr_div_2ui(out->re, out->re, 1, kRnd);
  mpfr_sqrt(out->re, out->re, kRnd);
  if (sign < 0) mpfr_neg(t, t, kRnd);
  mpfr_set(out->im, t, kRnd);
}

bool CPow(Complex *out, const Complex &z, const Complex &w) {
  if (w.IsReal() && mpfr_integer_p(w.re) && mpfr_cmpabs_ui(w.re, 1 << 20) <= 0) {
    long n = mpfr_get_si(w.re, kRnd);
    if (z.IsReal()) {
      if (mpfr_zero_p(z.re) && n <= 0) return false;
      mpfr_pow_si(out->re, z.re, n, kRnd);
      mpfr_set_zero(out->im, 1);
      return true;
    }
    if (n > 4096 || n < -4096) return false;
    Complex result, base;
    mpfr_set_ui(result.re, 1, kRnd);
    Set(&base, z);
    unsigned long u = static_cast<unsigned long>(n < 0 ? -n : n);
    Complex tmp;
    while (u > 0) {
      if (u & 1) {
        CMul(&tmp, result, base);
        Set(&result, tmp);
      }
      u >>= 1;
      if (u) {
        CMul(&tmp, base, base);
        Set(&base, tmp);
      }
    }
    if (n < 0) {
      Complex one;
      mpfr_set_ui(one.re, 1, kRnd);
      return CDiv(out, one, result);
    }
    Set(out, result);
    return true;
  }
  if (z.IsReal() && w.IsReal() && mpfr_sgn(z.re) > 0) {
    mpfr_pow(out->re, z.re, w.re, kRnd);
    mpfr_set_zero(out->im, 1);
    return true;
  }
  if (mpfr_zero_p(z.re) && mpfr_zero_p(z.im)) {
    if (w.IsReal() && mpfr_sgn(w.re) > 0) {
      mpfr_set_zero(out->re, 1);
      mpfr_set_zero(out->im, 1);
      return true;
    }
    return false;
  }
  Complex l, p;
  if (!CLog(&l, z)) return false;
  CMul(&p, l, w);
  CExp(out, p);
  return true;
}

class Numeric {
 public:
  Numeric(const Tree &t, const EvalContext &ctx) : t_(t), ctx_(ctx) {}

  bool Eval(int32_t i, Complex *out) {
    if (++visits_ > ctx_.max_visits) return false;
    const Node &n = t_.node(i);
    switch (n.kind) {
      case NodeKind::kNumber: {
        char buf[600];
        std::string_view s = t_.NodeText(i);
        if (s.size() + 1 > sizeof(buf)) return false;
        std::memcpy(buf, s.data(), s.size());
        buf[s.size()] = 0;
        mpfr_set_zero(out->im, 1);
        return mpfr_set_str(out->re, buf, 10, kRnd) == 0;
      }
      case NodeKind::kBaseNumber: {
        char buf[600];
        std::string_view s = t_.NodeText(i);
        if (s.size() + 1 > sizeof(buf)) return false;
        std::memcpy(buf, s.data(), s.size());
        buf[s.size()] = 0;
        mpz_class v;
        if (v.set_str(buf, n.aux) != 0) return false;
        mpfr_set_z(out->re, v.get_mpz_t(), kRnd);
        mpfr_set_zero(out->im, 1);
        return true;
      }
      case NodeKind::kSymbol: {
        std::string_view name = t_.NodeText(i);
        for (const SymbolValue &s : ctx_.symbols) {
          if (s.name == name) {
            mpfr_set_d(out->re, s.value, kRnd);
            mpfr_set_zero(out->im, 1);
            return true;
          }
        }
        return false;
      }
      case NodeKind::kConstant:
        mpfr_set_zero(out->im, 1);
        switch (static_cast<Constant>(n.op)) {
          case Constant::kPi:
            mpfr_const_pi(out->re, kRnd);
            return true;
          case Constant::kE:
            mpfr_set_ui(out->re, 1, kRnd);
            mpfr_exp(out->re, out->re, kRnd);
            return true;
          case Constant::kI:
            mpfr_set_zero(out->re, 1);
            mpfr_set_ui(out->im, 1, kRnd);
            return true;
          case Constant::kInfinity:
            mpfr_set_inf(out->re, 1);
            return true;
          case Constant::kEmptySet:
            return false;
        }
        return false;
      case NodeKind::kAdd: {
        if (!Eval(t_.kid(i, 0), out)) return false;
        Complex x;
        for (int32_t k = 1; k < n.num_kids; ++k) {
          if (!Eval(t_.kid(i, k), &x)) return false;
          mpfr_add(out->re, out->re, x.re, kRnd);
          mpfr_add(out->im, out->im, x.im, kRnd);
        }
        return true;
      }
      case NodeKind::kMul: {
        if (!Eval(t_.kid(i, 0), out)) return false;
        Complex x, r;
        for (int32_t k = 1; k < n.num_kids; ++k) {
          if (!Eval(t_.kid(i, k), &x)) return false;
          CMul(&r, *out, x);
          Set(out, r);
        }
        return true;
      }
      case NodeKind::kNeg:
        if (!Eval(t_.kid(i, 0), out)) return false;
        mpfr_neg(out->re, out->re, kRnd);
        mpfr_neg(out->im, out->im, kRnd);
        return true;
      case NodeKind::kDiv: {
        Complex a, b;
        if (!Eval(t_.kid(i, 0), &a) || !Eval(t_.kid(i, 1), &b)) return false;
        return CDiv(out, a, b);
      }
      case NodeKind::kPercent:
        if (!Eval(t_.kid(i, 0), out)) return false;
        if (ctx_.percent_as_fraction) {
          mpfr_div_ui(out->re, out->re, 100, kRnd);
          mpfr_div_ui(out->im, out->im, 100, kRnd);
        }
        return true;
      case NodeKind::kPlusMinus: {
        int rank = PlusMinusRank(ctx_, i);
        if (rank < 0) return false;
        Complex b;
        if (!Eval(t_.kid(i, 0), out) || !Eval(t_.kid(i, 1), &b)) return false;
        bool minus = ((ctx_.pm_mask >> rank) & 1) != (n.op == 1 ? 1u : 0u);
        if (minus) {
          mpfr_sub(out->re, out->re, b.re, kRnd);
          mpfr_sub(out->im, out->im, b.im, kRnd);
        } else {
          mpfr_add(out->re, out->re, b.re, kRnd);
          mpfr_add(out->im, out->im, b.im, kRnd);
        }
        return true;
      }
      case NodeKind::kPow: {
        Complex a, b;
        if (!Eval(t_.kid(i, 0), &a) || !Eval(t_.kid(i, 1), &b)) return false;
        return CPow(out, a, b);
      }
      case NodeKind::kSqrt: {
        Complex a;
        if (!Eval(t_.kid(i, 0), &a)) return false;
        if (n.num_kids == 1) {
          CSqrt(out, a);
          return true;
        }
        Complex k;
        if (!Eval(t_.kid(i, 1), &k) || !k.IsReal() || !mpfr_integer_p(k.re) ||
            mpfr_cmp_ui(k.re, 2) < 0 || mpfr_cmp_ui(k.re, 64) > 0) {
          return false;
        }
        unsigned long q = mpfr_get_ui(k.re, kRnd);
        if (a.IsReal() && (mpfr_sgn(a.re) >= 0 || q % 2 == 1)) {
          mpfr_rootn_ui(out->re, a.re, q, kRnd);
          mpfr_set_zero(out->im, 1);
          return true;
        }
        Complex w;
        mpfr_set_ui(w.re, 1, kRnd);
        mpfr_div_ui(w.re, w.re, q, kRnd);
        return CPow(out, a, w);
      }
      case NodeKind::kFunc:
        return EvalFunc(i, out);
      case NodeKind::kFactorial: {
        Complex a;
        if (!Eval(t_.kid(i, 0), &a) || !a.IsReal() || mpfr_sgn(a.re) < 0) return false;
        if (mpfr_integer_p(a.re) && mpfr_cmp_ui(a.re, 1000) <= 0) {
          mpfr_fac_ui(out->re, mpfr_get_ui(a.re, kRnd), kRnd);
        } else {
          mpfr_add_ui(a.re, a.re, 1, kRnd);
          mpfr_gamma(out->re, a.re, kRnd);
        }
        mpfr_set_zero(out->im, 1);
        return true;
      }
      case NodeKind::kBinom: {
        Complex a, b;
        if (!Eval(t_.kid(i, 0), &a) || !Eval(t_.kid(i, 1), &b)) return false;
        if (!a.IsReal() || !b.IsReal() || !mpfr_integer_p(a.re) || !mpfr_integer_p(b.re) ||
            mpfr_sgn(a.re) < 0 || mpfr_sgn(b.re) < 0 || mpfr_cmp_ui(a.re, 100000) > 0 ||
            mpfr_cmp_ui(b.re, 2000) > 0) {
          return false;
        }
        mpz_class v;
        mpz_bin_uiui(v.get_mpz_t(), mpfr_get_ui(a.re, kRnd), mpfr_get_ui(b.re, kRnd));
        mpfr_set_z(out->re, v.get_mpz_t(), kRnd);
        mpfr_set_zero(out->im, 1);
        return true;
      }
      case NodeKind::kAbs: {
        Complex a;
        if (!Eval(t_.kid(i, 0), &a)) return false;
        mpfr_hypot(out->re, a.re, a.im, kRnd);
        mpfr_set_zero(out->im, 1);
        return true;
      }
      default:
        return false;
    }
  }

 private:
  bool EvalFunc(int32_t i, Complex *out) {
    const Node &n = t_.node(i);
    Complex a;
    if (!Eval(t_.kid(i, 0), &a)) return false;
    Func f = static_cast<Func>(n.op);
    if (f == Func::kLog) {
      Complex b, la, lb;
      if (!Eval(t_.kid(i, 1), &b) || !CLog(&la, a) || !CLog(&lb, b)) return false;
      return CDiv(out, la, lb);
    }
    if (f == Func::kLn) return CLog(out, a);
    if (f == Func::kExp) {
      CExp(out, a);
      return true;
    }
    if (!a.IsReal()) {
      // sin, cos and their ratios of complex arguments.
      MPFR_DECL_INIT(s, kNumericBits);
      MPFR_DECL_INIT(c, kNumericBits);
      MPFR_DECL_INIT(sh, kNumericBits);
      MPFR_DECL_INIT(ch, kNumericBits);
      mpfr_sin_cos(s, c, a.re, kRnd);
      mpfr_sinh_cosh(sh, ch, a.im, kRnd);
      Complex sn, cs;
      mpfr_mul(sn.re, s, ch, kRnd);
      mpfr_mul(sn.im, c, sh, kRnd);
      mpfr_mul(cs.re, c, ch, kRnd);
      mpfr_mul(cs.im, s, sh, kRnd);
      mpfr_neg(cs.im, cs.im, kRnd);
      Complex one;
      mpfr_set_ui(one.re, 1, kRnd);
      switch (f) {
        case Func::kSin:
          Set(out, sn);
          return true;
        case Func::kCos:
          Set(out, cs);
          return true;
        case Func::kTan:
          return CDiv(out, sn, cs);
        case Func::kCot:
          return CDiv(out, cs, sn);
        case Func::kSec:
          return CDiv(out, one, cs);
        case Func::kCsc:
          return CDiv(out, one, sn);
        default:
          return false;
      }
    }
    mpfr_set_zero(out->im, 1);
    mpfr_ptr r = out->re;
    switch (f) {
      case Func::kSin:
        mpfr_sin(r, a.re, kRnd);
        break;
      case Func::kCos:
        mpfr_cos(r, a.re, kRnd);
        break;
      case Func::kTan:
        mpfr_tan(r, a.re, kRnd);
        break;
      case Func::kCot:
        mpfr_cot(r, a.re, kRnd);
        break;
      case Func::kSec:
        mpfr_sec(r, a.re, kRnd);
        break;
      case Func::kCsc:
        mpfr_csc(r, a.re, kRnd);
        break;
      case Func::kArcsin:
        mpfr_asin(r, a.re, kRnd);
        break;
      case Func::kArccos:
        mpfr_acos(r, a.re, kRnd);
        break;
      case Func::kArctan:
        mpfr_atan(r, a.re, kRnd);
        break;
      case Func::kSinh:
        mpfr_sinh(r, a.re, kRnd);
        break;
      case Func::kCosh:
        mpfr_cosh(r, a.re, kRnd);
        break;
      case Func::kTanh:
        mpfr_tanh(r, a.re, kRnd);
        break;
      default:
        return false;
    }
    return !mpfr_nan_p(r);
  }

  const Tree &t_;
  const EvalContext &ctx_;
  int32_t visits_ = 0;
};

}  // namespace

bool CollectPlusMinus(const Tree &tree, int32_t node,
                      absl::InlinedVector<int32_t, kMaxPlusMinus> *out) {
  const Node &n = tree.node(node);
  if (n.kind == NodeKind::kPlusMinus) {
    if (out->size() >= kMaxPlusMinus) return false;
    out->push_back(node);
  }
  for (int32_t k = 0; k < n.num_kids; ++k) {
    if (!CollectPlusMinus(tree, tree.kid(node, k), out)) return false;
  }
  return true;
}

bool CollectSymbols(const Tree &tree, int32_t node, absl::InlinedVector<std::string_view, 8> *names,
                    size_t max) {
  const Node &n = tree.node(node);
  if (n.kind == NodeKind::kSymbol) {
    std::string_view name = tree.NodeText(node);
    bool seen = false;
    for (std::string_view s : *names) seen = seen || s == name;
    if (!seen) {
      if (names->size() >= max) return false;
      names->push_back(name);
    }
  }
  for (int32_t k = 0; k < n.num_kids; ++k) {
    if (!CollectSymbols(tree, tree.kid(node, k), names, max)) return false;
  }
  return true;
}

bool Contains(const Tree &tree, int32_t node, NodeKind kind) {
  const Node &n = tree.node(node);
  if (n.kind == kind) return true;
  for (int32_t k = 0; k < n.num_kids; ++k) {
    if (Contains(tree, tree.kid(node, k), kind)) return true;
  }
  return false;
}

bool EvalExact(const Tree &tree, int32_t node, const EvalContext &ctx, QValue *out) {
  Exact e(tree, ctx);
  return e.Eval(node, out);
}

bool EvalNumeric(const Tree &tree, int32_t node, const EvalContext &ctx, Complex *out) {
  // MPFR keeps per-thread caches (pi, exp constants, an integer pool); free
  // them when a thread that evaluated something exits, so worker threads do not
  // leak them.
  struct CacheReleaser {
    ~CacheReleaser() { mpfr_free_cache2(MPFR_FREE_LOCAL_CACHE); }
  };
  thread_local CacheReleaser releaser;
  (void)releaser;
  Numeric e(tree, ctx);
  if (!e.Eval(node, out)) return false;
  return !mpfr_nan_p(out->re) && !mpfr_nan_p(out->im);
}

}  // namespace rlvr::verifiers::math
