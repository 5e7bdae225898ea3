// The built-in verifiable reasoning task of `rlvr demo`: one-digit arithmetic with three
// operands and operator precedence, solved with a short scratchpad and a boxed answer.
//
//   prompt      "7-8*9="
//   completion  "8*9=72;7-72=-65;\boxed{-65}"
//
// The answer is checked by the math verifier against `answer`, so any completion that boxes the
// right value scores, whatever its scratchpad. Problems are a pure function of (seed, index).
#ifndef RLVR_CLUSTER_DEMO_TASK_H_
#define RLVR_CLUSTER_DEMO_TASK_H_

#include <cstdint>
#include <string>
#include <vector>

namespace rlvr::cluster {

struct ArithmeticProblem {
  std::string prompt;    // "7-8*9="
  std::string solution;  // "8*9=72;7-72=-65;\boxed{-65}"
  std::string answer;    // "-65"
};

// Problem `index` of the stream `seed`.
ArithmeticProblem MakeArithmeticProblem(uint64_t seed, uint64_t index);

// `count` problems starting at `first`.
std::vector<ArithmeticProblem> MakeArithmeticProblems(uint64_t seed, uint64_t first, int64_t count);

// A byte-level BPE tokenizer.json (no merges: one token per byte, plus <|endoftext|> as id 256)
// in the Hugging Face format, for the demo's character-level model.
std::string ByteLevelTokenizerJson();

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_DEMO_TASK_H_
