// The math verifier on real data (../shared/data): every GSM8K test reference
// solution and every MATH-500 reference solution must be scored correct against
// its gold answer, and perturbed gold answers (a digit changed, a sign flipped,
// a fraction inverted, an interval endpoint opened) must be scored wrong.
// AIME's "025" and AMC's 27.0 gold forms must accept 25 and 27.
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "verifiers/math/equivalence.h"
#include "verifiers/math/math_verifier.h"
#include "verifiers/math/parser.h"

namespace rlvr::verifiers::math {
namespace {

std::string DataPath(const std::string &name) {
  const char *src = std::getenv("RLVR_SOURCE_DIR");
  std::string root = src != nullptr ? std::string(src) + "/.." : "..";
  return root + "/shared/data/" + name;
}

std::vector<nlohmann::json> ReadRecords(const std::string &name) {
  std::vector<nlohmann::json> out;
  std::ifstream in(DataPath(name));
  EXPECT_TRUE(in.good()) << "cannot open " << DataPath(name);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

std::string GsmGold(const std::string &answer) {
  size_t p = answer.rfind("####");
  std::string g = p == std::string::npos ? answer : answer.substr(p + 4);
  while (!g.empty() && (g.front() == ' ')) g.erase(g.begin());
  while (!g.empty() && (g.back() == ' ' || g.back() == '\n')) g.pop_back();
  return g;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// ---- perturbations of a gold answer; each returns false when it does not
// apply ----

// True if the digit at `p` is part of an exponent, a subscript or a root index.
bool InScript(const std::string &s, size_t p) {
  size_t b = p;
  while (b > 0 && (IsDigit(s[b - 1]) || s[b - 1] == '.')) --b;
  if (b == 0) return false;
  char c = s[b - 1];
  if (c == '^' || c == '_' || c == '[') return true;
  return c == '{' && b >= 2 && (s[b - 2] == '^' || s[b - 2] == '_');
}

// Changes the first digit that is not in an exponent or subscript.
bool ChangeDigit(const std::string &gold, std::string *out) {
  for (size_t p = 0; p < gold.size(); ++p) {
    if (!IsDigit(gold[p]) || InScript(gold, p)) continue;
    *out = gold;
    (*out)[p] = static_cast<char>('0' + ((gold[p] - '0') + 1) % 10);
    return true;
  }
  return false;
}

// Flips the sign of the first number (or of the whole answer when that number
// is a one-character TeX argument such as \frac43).
bool FlipSign(const std::string &gold, std::string *out) {
  size_t p = gold.find_first_of("0123456789");
  if (p == std::string::npos) return false;
  size_t b = p;
  if (b > 0 && gold[b - 1] == '.') --b;
  size_t e = p;
  while (e < gold.size() && (IsDigit(gold[e]) || gold[e] == '.')) ++e;
  std::string number = gold.substr(b, e - b);
  if (number.find_first_of("123456789") == std::string::npos) return false;  // -0 == 0
  if (InScript(gold, p)) return false;
  size_t q = b;
  while (q > 0 && gold[q - 1] == ' ') --q;
  if (q > 0 && std::isalpha(static_cast<unsigned char>(gold[q - 1]))) {
    *out = gold[0] == '-' ? gold.substr(1) : "-" + gold;
    return true;
  }
  *out = gold;
  if (b > 0 && gold[b - 1] == '-') {
    out->erase(b - 1, 1);
  } else {
    out->insert(b, "-");
  }
  return true;
}

// Brace-delimited argument starting at `p`; returns its end (one past the
// closing brace).
size_t ArgEnd(const std::string &s, size_t p) {
  if (p >= s.size()) return std::string::npos;
  if (s[p] != '{') return p + 1;
  int depth = 0;
  for (size_t i = p; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string::npos;
}

bool InvertFraction(const std::string &gold, std::string *out) {
  size_t f = gold.find("frac");
  if (f == std::string::npos) return false;
  size_t a = f + 4;
  while (a < gold.size() && gold[a] == ' ') ++a;
  size_t ae = ArgEnd(gold, a);
  if (ae == std::string::npos) return false;
  size_t b = ae;
  while (b < gold.size() && gold[b] == ' ') ++b;
  size_t be = ArgEnd(gold, b);
  if (be == std::string::npos) return false;
  std::string num = gold.substr(a, ae - a);
  std::string den = gold.substr(b, be - b);
  if (num == den) return false;
  auto braced = [](const std::string &x) { return x[0] == '{' ? x : "{" + x + "}"; };
  *out = gold.substr(0, a) + braced(den) + braced(num) + gold.substr(be);
  return true;
}

bool OpenEndpoint(const std::string &gold, std::string *out) {
  for (size_t i = 0; i < gold.size(); ++i) {
    if (gold[i] != '[' && gold[i] != ']') continue;
    if (gold[i] == '[' && i >= 5 && gold.compare(i - 5, 5, "\\sqrt") == 0) continue;
    if (gold[i] == ']' && gold.rfind("\\sqrt[", i) != std::string::npos &&
        gold.find(']', gold.rfind("\\sqrt[", i)) == i) {
      continue;
    }
    *out = gold;
    (*out)[i] = gold[i] == '[' ? '(' : ')';
    return true;
  }
  return false;
}

struct Tally {
  int total = 0;
  int correct = 0;
  std::vector<std::string> misses;
};

TEST(MathRealData, Gsm8kReferenceSolutionsAreCorrect) {
  std::vector<nlohmann::json> rows = ReadRecords("gsm8k_test.jsonl");
  ASSERT_EQ(rows.size(), 1319u);
  Tally t;
  for (const auto &r : rows) {
    std::string solution = r["answer"];
    std::string gold = GsmGold(solution);
    ASSERT_FALSE(gold.empty());
    MathVerdict v = VerifyMath(solution, gold);
    ++t.total;
    if (v.correct) {
      ++t.correct;
    } else {
      t.misses.push_back(gold + " <- " + v.extracted + " (" +
                         std::string(MathStatusName(v.status)) + ")");
    }
  }
  std::printf("GSM8K reference solutions: %d / %d correct\n", t.correct, t.total);
  for (const auto &m : t.misses) std::printf("  miss: %s\n", m.c_str());
  EXPECT_EQ(t.correct, t.total);
}

TEST(MathRealData, Math500ReferenceSolutionsAreCorrect) {
  std::vector<nlohmann::json> rows = ReadRecords("math500_test.jsonl");
  ASSERT_EQ(rows.size(), 500u);
  Tally t;
  for (const auto &r : rows) {
    std::string solution = r["solution"];
    std::string gold = r["answer"];
    MathVerdict v = VerifyMath(solution, gold);
    ++t.total;
    if (v.correct) {
      ++t.correct;
    } else {
      t.misses.push_back(std::string(r["unique_id"]) + ": " + gold + " <- " + v.extracted + " (" +
                         std::string(MathStatusName(v.status)) + ")");
    }
  }
  std::printf("MATH-500 reference solutions: %d / %d correct\n", t.correct, t.total);
  for (const auto &m : t.misses) std::printf("  miss: %s\n", m.c_str());
  EXPECT_EQ(t.correct, t.total);
}

// The MATH-500 golds are decided by the parser and the comparator, not by the
// last-resort string comparison: each parses and compares equal to itself.
TEST(MathRealData, Math500GoldsParse) {
  std::vector<nlohmann::json> rows = ReadRecords("math500_test.jsonl");
  ASSERT_EQ(rows.size(), 500u);
  int parsed = 0;
  Tree a, b;
  for (const auto &r : rows) {
    std::string gold = r["answer"];
    absl::Status sa = ParseMath(gold, ParseLimits{}, &a);
    absl::Status sb = ParseMath(gold, ParseLimits{}, &b);
    EXPECT_TRUE(sa.ok()) << gold << ": " << sa;
    if (!sa.ok() || !sb.ok()) continue;
    EXPECT_EQ(CompareAnswers(a, b, CompareOptions{}), Comparison::kEqual) << gold;
    ++parsed;
  }
  EXPECT_EQ(parsed, 500);
}

// Applies every perturbation to every gold answer; each perturbed answer must
// be wrong.
void CheckPerturbations(const std::vector<std::string> &golds, const char *name) {
  using Perturb = bool (*)(const std::string &, std::string *);
  struct Kind {
    const char *name;
    Perturb fn;
    int applied = 0;
    int wrong = 0;
  };
  Kind kinds[] = {{"digit", ChangeDigit},
                  {"sign", FlipSign},
                  {"fraction", InvertFraction},
                  {"interval", OpenEndpoint}};
  std::vector<std::string> failures;
  for (const std::string &gold : golds) {
    for (Kind &k : kinds) {
      std::string perturbed;
      if (!k.fn(gold, &perturbed)) continue;
      ++k.applied;
      MathVerdict v = VerifyMath("So the answer is $\\boxed{" + perturbed + "}$.", gold);
      if (v.status == MathStatus::kWrong) {
        ++k.wrong;
      } else {
        failures.push_back(std::string(k.name) + ": " + gold + " -> " + perturbed + " (" +
                           std::string(MathStatusName(v.status)) + ")");
      }
    }
  }
  for (const Kind &k : kinds) {
    std::printf("%s perturbation %-8s: %d / %d wrong\n", name, k.name, k.wrong, k.applied);
  }
  for (const auto &f : failures) std::printf("  not wrong: %s\n", f.c_str());
  EXPECT_TRUE(failures.empty());
  EXPECT_GT(kinds[0].applied, static_cast<int>(golds.size()) / 2);
  EXPECT_GT(kinds[1].applied, static_cast<int>(golds.size()) / 2);
}

TEST(MathRealData, Gsm8kPerturbedGoldIsWrong) {
  std::vector<std::string> golds;
  for (const auto &r : ReadRecords("gsm8k_test.jsonl")) golds.push_back(GsmGold(r["answer"]));
  ASSERT_EQ(golds.size(), 1319u);
  CheckPerturbations(golds, "GSM8K");
}

TEST(MathRealData, Math500PerturbedGoldIsWrong) {
  std::vector<std::string> golds;
  for (const auto &r : ReadRecords("math500_test.jsonl")) golds.push_back(r["answer"]);
  ASSERT_EQ(golds.size(), 500u);
  CheckPerturbations(golds, "MATH-500");
}

TEST(MathRealData, AimeAndAmcGoldForms) {
  int checked = 0;
  for (const auto &r : ReadRecords("aime24_test.jsonl")) {
    std::string gold = r["answer"];  // "025"
    std::string plain = std::to_string(std::stoi(gold));
    EXPECT_TRUE(VerifyMath("\\boxed{" + plain + "}", gold).correct) << gold;
    EXPECT_FALSE(VerifyMath("\\boxed{" + plain + "1}", gold).correct) << gold;
    ++checked;
  }
  for (const auto &r : ReadRecords("amc23_test.jsonl")) {
    double a = r["answer"];  // 27.0
    nlohmann::json j = a;
    std::string gold = j.dump();
    std::string plain = std::to_string(static_cast<long long>(a));
    EXPECT_TRUE(VerifyMath("The answer is " + plain + ".", gold).correct) << gold;
    EXPECT_FALSE(VerifyMath("The answer is " + plain + "5.", gold).correct) << gold;
    ++checked;
  }
  EXPECT_EQ(checked, 70);
}

}  // namespace
}  // namespace rlvr::verifiers::math
