// libFuzzer target for the math verifier: the parser, the extractor and the
// whole comparison. Input: "gold\ncompletion". Besides crashes and sanitizer
// reports it fails on any call that takes longer than kMaxMillis (the verifier
// promises a few milliseconds; the margin covers sanitizer builds).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "verifiers/math/math_verifier.h"

namespace {
constexpr double kMaxMillis = 250.0;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using rlvr::verifiers::math::ExtractAnswer;
  using rlvr::verifiers::math::ParseLimits;
  using rlvr::verifiers::math::ParseMath;
  using rlvr::verifiers::math::Tree;
  using rlvr::verifiers::math::VerifyMath;
  std::string_view input(reinterpret_cast<const char *>(data), size);
  size_t nl = input.find('\n');
  std::string_view gold = nl == std::string_view::npos ? input : input.substr(0, nl);
  std::string_view completion = nl == std::string_view::npos ? input : input.substr(nl + 1);

  auto start = std::chrono::steady_clock::now();
  Tree tree;
  (void)ParseMath(input, ParseLimits{}, &tree);
  (void)ExtractAnswer(completion, {});
  (void)VerifyMath(completion, gold);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (ms > kMaxMillis) {
    std::fprintf(stderr, "fuzz_math_verifier: %.1f ms on a %zu-byte input\n", ms, size);
    std::abort();
  }
  return 0;
}
