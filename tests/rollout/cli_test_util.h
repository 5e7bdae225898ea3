// Shared by the `rlvr generate` / `rlvr logprobs` CLI tests (CPU and --device cuda): the model
// they run and their temporary files.
#ifndef RLVR_TESTS_ROLLOUT_CLI_TEST_UTIL_H_
#define RLVR_TESTS_ROLLOUT_CLI_TEST_UTIL_H_

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/jsonl.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"

namespace rlvr::rollout::testing {

// A tiny random qwen3_moe (seed 3, init scale 0.1) whose vocabulary covers the qwen2 fixture
// tokenizer, saved with that tokenizer to `dir` (Hugging Face layout).
inline void WriteTinyCliModel(const std::string& dir) {
  const std::string tok_dir = "tests/fixtures/tokenizers/qwen2";
  auto tok = policy::Tokenizer::FromFile(tok_dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto cfg = policy::Preset("qwen3_moe", "tiny");
  ASSERT_TRUE(cfg.ok());
  cfg->vocab_size = ((*tok)->vocab_size() + 63) / 64 * 64;
  auto model = policy::CausalLM<float>::Create(*cfg);
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->InitRandom(3, 0.1);
  policy::SaveOptions so;
  so.tokenizer_dir = tok_dir;
  ASSERT_TRUE(policy::SaveModel(**model, dir, so).ok());
}

// A path in the test's temporary folder.
inline std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

// Writes `text` to TempPath(name) and returns the path.
inline std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string p = TempPath(name);
  std::ofstream(p) << text;
  return p;
}

// The JSON lines of `path` (empty, with a test failure, if it cannot be read).
inline std::vector<nlohmann::json> ReadLines(const std::string& path) {
  auto lines = ReadJsonl(path);
  EXPECT_TRUE(lines.ok()) << lines.status();
  return lines.ok() ? *lines : std::vector<nlohmann::json>{};
}

}  // namespace rlvr::rollout::testing

#endif  // RLVR_TESTS_ROLLOUT_CLI_TEST_UTIL_H_
