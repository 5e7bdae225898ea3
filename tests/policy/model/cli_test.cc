// `rlvr init` and `rlvr logprobs` (cli/cmd_init.cc, cli/cmd_logprobs.cc, linked directly).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/text/tokenizer.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rlvr_cli_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string P(const std::string& name) const { return (root_ / name).string(); }
  fs::path root_;
};

TEST_F(CliTest, InitWritesALoadableDeterministicModel) {
  ASSERT_EQ(
      InitMain({"init", "--arch", "qwen3_moe", "--preset", "tiny", "--out", P("a"), "--seed", "5"}),
      0);
  ASSERT_EQ(
      InitMain({"init", "--arch", "qwen3_moe", "--preset", "tiny", "--out", P("b"), "--seed", "5"}),
      0);
  ASSERT_EQ(
      InitMain({"init", "--arch", "qwen3_moe", "--preset", "tiny", "--out", P("c"), "--seed", "6"}),
      0);
  EXPECT_EQ(*ReadFile(P("a/model.safetensors")), *ReadFile(P("b/model.safetensors")));
  EXPECT_NE(*ReadFile(P("a/model.safetensors")), *ReadFile(P("c/model.safetensors")));
  auto m = policy::LoadModel<float>(P("a"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->model->config().vocab_size, 3008);
  EXPECT_EQ(m->eos_token_ids, (std::vector<int64_t>{3002, 3000}));
  EXPECT_TRUE(fs::exists(P("a/tokenizer.json")));
  EXPECT_TRUE(fs::exists(P("a/tokenizer_config.json")));
  EXPECT_EQ(m->model->config().NumParameters(), 509312);  // docs/presets.md

  ASSERT_EQ(InitMain({"init", "--arch", "llama", "--preset", "tiny", "--out", P("l")}), 0);
  auto l = policy::LoadModel<float>(P("l"));
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->model->config().vocab_size, 3072);
  EXPECT_EQ(l->generation.bos_token_id, 3000);
  EXPECT_EQ(l->eos_token_ids.size(), 3u);
}

TEST_F(CliTest, InitErrors) {
  EXPECT_EQ(InitMain({"init", "--out", P("x")}), 2);  // --arch missing
  EXPECT_EQ(InitMain({"init", "--arch", "gpt2", "--out", P("x")}), 1);
  EXPECT_EQ(InitMain({"init", "--arch", "qwen3", "--preset", "huge", "--out", P("x")}), 1);
  EXPECT_EQ(InitMain({"init", "--arch", "qwen3", "--out", P("x"), "--tokenizer", P("none")}), 1);
  EXPECT_FALSE(fs::exists(P("x")));
}

TEST_F(CliTest, LogprobsMatchUnbatchedModel) {
  ASSERT_EQ(
      InitMain({"init", "--arch", "qwen3", "--preset", "tiny", "--out", P("m"), "--seed", "1"}), 0);
  {
    std::ofstream in(P("in.jsonl"));
    in << R"({"id": 0, "prompt": "What is 2+2?", "completion": " 4, since 2+2=4."})"
       << "\n";
    in << R"({"id": 1, "prompt": "Hi", "completion": " there"})"
       << "\n";
    in << R"({"id": 2, "prompt_tokens": [5, 6, 7], "completion_tokens": [8, 9, 3002]})"
       << "\n";
  }
  ASSERT_EQ(LogprobsMain({"logprobs", "--model", P("m"), "--in", P("in.jsonl"), "--out",
                          P("out.jsonl"), "--batch-tokens", "64"}),
            0);
  auto lines = ReadJsonl(P("out.jsonl"));
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 3u);
  auto loaded = policy::LoadModel<float>(P("m"));
  ASSERT_TRUE(loaded.ok());
  auto tok = policy::Tokenizer::FromFile(P("m/tokenizer.json"));
  ASSERT_TRUE(tok.ok());
  ASSERT_TRUE(loaded->model->set_active_vocab((*tok)->vocab_size()).ok());
  int64_t compared = 0;
  for (size_t i = 0; i < lines->size(); ++i) {
    const json& r = (*lines)[i];
    EXPECT_EQ(r["id"], static_cast<int>(i));  // input order kept
    std::vector<int32_t> prompt = r.contains("prompt_tokens")
                                      ? r["prompt_tokens"].get<std::vector<int32_t>>()
                                      : (*tok)->Encode(r["prompt"].get<std::string>(), true);
    std::vector<int32_t> completion = r["completion_tokens"].get<std::vector<int32_t>>();
    if (r.contains("completion")) {
      EXPECT_EQ(completion, (*tok)->Encode(r["completion"].get<std::string>()));
    }
    ASSERT_EQ(r["logprobs"].size(), completion.size());
    ASSERT_EQ(r["entropy"].size(), completion.size());
    std::vector<int32_t> ids = prompt;
    ids.insert(ids.end(), completion.begin(), completion.end());
    const int64_t T = static_cast<int64_t>(ids.size());
    std::vector<int32_t> targets(T, -1);
    for (size_t k = 0; k < completion.size(); ++k) targets[prompt.size() - 1 + k] = completion[k];
    ASSERT_TRUE(loaded->model->Forward(ids.data(), 1, T).ok());
    std::vector<float> lp(T), ent(T);
    ASSERT_TRUE(loaded->model->TokenLogProbs(targets.data(), lp.data(), ent.data()).ok());
    double sum = 0;
    for (size_t k = 0; k < completion.size(); ++k) {
      EXPECT_NEAR(r["logprobs"][k].get<double>(), lp[prompt.size() - 1 + k], 1e-5);
      EXPECT_NEAR(r["entropy"][k].get<double>(), ent[prompt.size() - 1 + k], 1e-5);
      EXPECT_LT(r["logprobs"][k].get<double>(), 0.0);
      EXPECT_LE(r["entropy"][k].get<double>(), std::log(3005.0) + 1e-4);
      sum += r["logprobs"][k].get<double>();
      ++compared;
    }
    EXPECT_NEAR(r["sum_logprob"].get<double>(), sum, 1e-4);
  }
  EXPECT_GE(compared, 8);
}

TEST_F(CliTest, LogprobsBadLineNamesFileAndLine) {
  ASSERT_EQ(InitMain({"init", "--arch", "qwen2", "--preset", "tiny", "--out", P("m")}), 0);
  {
    std::ofstream in(P("in.jsonl"));
    in << R"({"prompt": "a", "completion": "b"})"
       << "\n";
    in << R"({"prompt": "a"})"
       << "\n";
  }
  testing::internal::CaptureStderr();
  EXPECT_EQ(
      LogprobsMain({"logprobs", "--model", P("m"), "--in", P("in.jsonl"), "--out", P("out.jsonl")}),
      1);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("in.jsonl:2"), std::string::npos) << err;
  EXPECT_NE(err.find("completion"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(P("out.jsonl")));
  EXPECT_EQ(LogprobsMain({"logprobs", "--model", P("m")}), 2);
}

}  // namespace
}  // namespace rlvr::cli
