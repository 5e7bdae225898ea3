#include "cluster/demo_task.h"

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "nlohmann/json.hpp"

namespace rlvr::cluster {
namespace {

int64_t Apply(int64_t a, char op, int64_t b) {
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    default:
      return a * b;
  }
}

// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 + n.
std::string ByteToUnicode(int b) {
  auto printable = [](int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
  };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c) {
      if (!printable(c)) ++n;
    }
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

}  // namespace

ArithmeticProblem MakeArithmeticProblem(uint64_t seed, uint64_t index) {
  Rng rng = Rng(seed, 0x64656d6f).Split(index);
  static constexpr char kOps[] = {'+', '-', '*'};
  int64_t a = static_cast<int64_t>(rng.UniformInt(10));
  int64_t b = static_cast<int64_t>(rng.UniformInt(10));
  int64_t c = static_cast<int64_t>(rng.UniformInt(10));
  char o1 = kOps[rng.UniformInt(3)];
  char o2 = kOps[rng.UniformInt(3)];
  ArithmeticProblem p;
  p.prompt = absl::StrCat(a, std::string(1, o1), b, std::string(1, o2), c, "=");
  int64_t result;
  if (o2 == '*' && o1 != '*') {
    // Precedence: the right product first.
    int64_t bc = b * c;
    result = Apply(a, o1, bc);
    p.solution = absl::StrCat(b, "*", c, "=", bc, ";", a, std::string(1, o1), bc, "=", result);
  } else {
    int64_t ab = Apply(a, o1, b);
    result = Apply(ab, o2, c);
    p.solution = absl::StrCat(a, std::string(1, o1), b, "=", ab, ";", ab, std::string(1, o2), c,
                              "=", result);
  }
  p.answer = absl::StrCat(result);
  absl::StrAppend(&p.solution, ";\\boxed{", result, "}");
  return p;
}

std::vector<ArithmeticProblem> MakeArithmeticProblems(uint64_t seed, uint64_t first,
                                                      int64_t count) {
  std::vector<ArithmeticProblem> out;
  out.reserve(count);
  for (int64_t i = 0; i < count; ++i) out.push_back(MakeArithmeticProblem(seed, first + i));
  return out;
}

std::string ByteLevelTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToUnicode(b)] = b;
  vocab["<|endoftext|>"] = 256;
  nlohmann::json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", 256},
         {"content", "<|endoftext|>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
        {"use_regex", false}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", nlohmann::json::array()}}},
  };
  return j.dump(1);
}

}  // namespace rlvr::cluster
