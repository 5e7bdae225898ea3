// Fuzzes the text-facing parts of the built-in verifiers: the format regexes, answer
// extraction and the Countdown expression parser (exact rational evaluation). The first byte
// picks the number of Countdown numbers; the rest is the completion.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reward/builtins.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto* format = rlvr::reward::MakeFormatVerifier({})->release();
  static const auto* countdown = rlvr::reward::MakeCountdownVerifier({})->release();
  if (size == 0) return 0;
  const int k = 1 + data[0] % 5;
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<int64_t> nums;
  for (int i = 0; i < k; ++i) nums.push_back(1 + (i * 37 + static_cast<int>(size)) % 100);
  rlvr::reward::CheckCountdown(text, nums, 24);
  rlvr::reward::ExtractTaggedAnswer(text);
  rlvr::reward::Sample sample;
  sample.completion = text;
  sample.prompt = "Assistant: <think>";
  sample.record =
      std::make_shared<const nlohmann::json>(nlohmann::json{{"target", 24}, {"nums", nums}});
  (void)format->Score(sample);
  (void)countdown->Score(sample);
  return 0;
}
