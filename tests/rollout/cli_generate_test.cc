// `rlvr generate` end to end on a tiny model with a real tokenizer: output lines, re-scoring
// by `rlvr logprobs` within 1e-5, determinism of a seed, and bad input lines.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/jsonl.h"
#include "kernels/cuda/cuda.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"
#include "tests/rollout/cli_test_util.h"

namespace rlvr::rollout {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class GenerateCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempPath("rollout_cli_model"));
    testing::WriteTinyCliModel(*dir_);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  std::string Write(const std::string& name, const std::string& text) {
    return testing::WriteTemp(name, text);
  }
  std::string Out(const std::string& name) { return testing::TempPath(name); }

  static std::string* dir_;
};
std::string* GenerateCliTest::dir_ = nullptr;

std::vector<json> Read(const std::string& path) { return testing::ReadLines(path); }

TEST_F(GenerateCliTest, WritesCompletionsThatRescoreExactly) {
  const std::string in = Write("gen_in.jsonl",
                               "{\"prompt\": \"What is 2+3?\", \"id\": \"a\"}\n"
                               "{\"prompt_tokens\": [5, 6, 7, 8], \"seed\": 11}\n");
  const std::string out = Out("gen_out.jsonl");
  ASSERT_EQ(cli::GenerateMain({"generate", "--model", *dir_, "--in", in, "--out", out, "--n",
                               "3", "--seed", "7", "--max-new-tokens", "12", "--template",
                               "r1-zero"}),
            0);
  const std::vector<json> lines = Read(out);
  ASSERT_EQ(lines.size(), 6u);
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& l = lines[i];
    EXPECT_EQ(l["index"], i / 3);
    EXPECT_EQ(l["sample"], i % 3);
    ASSERT_TRUE(l["tokens"].is_array());
    EXPECT_GE(l["tokens"].size(), 1u);
    EXPECT_LE(l["tokens"].size(), 12u);
    EXPECT_EQ(l["logprobs"].size(), l["tokens"].size());
    EXPECT_EQ(l["completion_tokens"], l["tokens"]);
    EXPECT_TRUE(l["completion"].is_string());
    const std::string fr = l["finish_reason"];
    EXPECT_TRUE(fr == "eos" || fr == "length") << fr;
    EXPECT_FALSE(l["experts"].empty()) << "MoE router choices are recorded";
  }
  EXPECT_EQ(lines[0]["id"], "a");
  EXPECT_EQ(lines[0]["prompt"], "What is 2+3?");
  EXPECT_GT(lines[0]["prompt_tokens"].size(), 20u);  // the R1-Zero template wraps the question
  EXPECT_EQ(lines[3]["prompt_tokens"], json::array({5, 6, 7, 8}));

  // `rlvr logprobs` of the same ids gives the recorded logprobs within 1e-5.
  const std::string scored = Out("gen_scored.jsonl");
  ASSERT_EQ(cli::LogprobsMain({"logprobs", "--model", *dir_, "--in", out, "--out", scored}), 0);
  const std::vector<json> again = Read(scored);
  ASSERT_EQ(again.size(), lines.size());
  int64_t compared = 0;
  double max_diff = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(again[i]["logprobs"].size(), lines[i]["logprobs"].size());
    for (size_t t = 0; t < lines[i]["logprobs"].size(); ++t) {
      max_diff = std::max(max_diff, std::abs(again[i]["logprobs"][t].get<double>() -
                                             lines[i]["logprobs"][t].get<double>()));
      ++compared;
    }
  }
  EXPECT_GT(compared, 6);
  EXPECT_LT(max_diff, 1e-5);

  // Same seed, same file.
  const std::string out2 = Out("gen_out2.jsonl");
  ASSERT_EQ(cli::GenerateMain({"generate", "--model", *dir_, "--in", in, "--out", out2, "--n",
                               "3", "--seed", "7", "--max-new-tokens", "12", "--template",
                               "r1-zero", "--max-batch", "2"}),
            0);
  const std::vector<json> lines2 = Read(out2);
  ASSERT_EQ(lines2.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines2[i]["tokens"], lines[i]["tokens"]);
}

TEST_F(GenerateCliTest, UnknownFieldNamesLineAndField) {
  const std::string in = Write("gen_bad.jsonl",
                               "{\"prompt\": \"ok\"}\n{\"prompt\": \"x\", \"question\": \"y\"}\n");
  ::testing::internal::CaptureStderr();
  const int rc = cli::GenerateMain(
      {"generate", "--model", *dir_, "--in", in, "--out", Out("gen_bad_out.jsonl")});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("gen_bad.jsonl:2"), std::string::npos) << err;
  EXPECT_NE(err.find("unknown field \"question\""), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(Out("gen_bad_out.jsonl")));
}

TEST_F(GenerateCliTest, ExtraFieldsAreCopiedWhenAllowed) {
  const std::string in = Write("gen_extra.jsonl", "{\"question\": \"2+2?\", \"answer\": \"4\"}\n");
  const std::string out = Out("gen_extra_out.jsonl");
  ASSERT_EQ(cli::GenerateMain({"generate", "--model", *dir_, "--in", in, "--out", out,
                               "--prompt-key", "question", "--allow-extra-fields",
                               "--max-new-tokens", "4"}),
            0);
  const std::vector<json> lines = Read(out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["answer"], "4");
  EXPECT_EQ(lines[0]["prompt"], "2+2?");
}

TEST_F(GenerateCliTest, EmptyPromptNamesTheLine) {
  const std::string in = Write("gen_empty.jsonl", "{\"prompt_tokens\": []}\n");
  ::testing::internal::CaptureStderr();
  const int rc = cli::GenerateMain(
      {"generate", "--model", *dir_, "--in", in, "--out", Out("gen_empty_out.jsonl")});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("request 0: prompt: empty"), std::string::npos) << err;
  EXPECT_NE(err.find("gen_empty.jsonl"), std::string::npos) << err;
}

TEST_F(GenerateCliTest, BadFlagIsUsageError) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cli::GenerateMain({"generate", "--model", *dir_, "--in", "x", "--out", "y",
                               "--top-p", "2"}),
            2);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("top_p"), std::string::npos) << err;
}

// --device errors come before the model is read (the model directory here does not exist), and
// name the flag: an unknown value lists the accepted ones; cuda without the backend or without a
// GPU says which. Runs in every build; the cuda part is skipped where a GPU is present.
TEST_F(GenerateCliTest, DeviceFlagErrorsAreImmediate) {
  const std::string missing = Out("no_such_model_dir");
  const std::string in = Write("dev_in.jsonl", "{\"prompt_tokens\": [5, 6]}\n");
  using Main = int (*)(const cli::Args&);
  for (auto [name, fn] : {std::pair<const char*, Main>{"generate", cli::GenerateMain},
                          std::pair<const char*, Main>{"logprobs", cli::LogprobsMain}}) {
    ::testing::internal::CaptureStderr();
    int rc = fn({name, "--model", missing, "--in", in, "--out", Out("dev_out.jsonl"),
                 "--device", "tpu"});
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(rc, 2) << name;
    EXPECT_NE(err.find("--device: \"tpu\" is not one of cpu, cuda"), std::string::npos) << err;

    int gpus = 0;
    if (kernels::cuda::BuiltWithCuda()) {
      auto n = kernels::cuda::DeviceCount();
      gpus = n.ok() ? *n : 0;
    }
    if (gpus > 0) continue;  // the GPU tests (rollout_cli_cuda_test) cover --device cuda
    ::testing::internal::CaptureStderr();
    rc = fn({name, "--model", missing, "--in", in, "--out", Out("dev_out.jsonl"), "--device",
             "cuda"});
    err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(rc, 1) << name;
    const std::string want =
        kernels::cuda::BuiltWithCuda()
            ? "--device cuda: no CUDA device found"
            : "--device cuda: built without the CUDA backend (configure with -DRLVR_CUDA=ON)";
    EXPECT_NE(err.find(want), std::string::npos) << name << ": " << err;
    EXPECT_EQ(err.find("no_such_model_dir"), std::string::npos) << "not immediate: " << err;
    EXPECT_FALSE(fs::exists(Out("dev_out.jsonl")));
  }
}

}  // namespace
}  // namespace rlvr::rollout
