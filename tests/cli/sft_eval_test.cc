// `rlvr sft` and `rlvr eval` end to end on a tiny model from `rlvr init` and the demo's verifiable
// arithmetic task (cluster/demo_task.h), plus one test per malformed input.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cluster/demo_task.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Outcome {
  int code = 0;
  std::string out, err;
};

Outcome Capture(int (*fn)(const Args&), const Args& args) {
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  Outcome o;
  o.code = fn(args);
  o.out = ::testing::internal::GetCapturedStdout();
  o.err = ::testing::internal::GetCapturedStderr();
  return o;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class SftEvalCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rlvr_sft_eval_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    ASSERT_EQ(InitMain({"init", "--arch", "qwen3", "--preset", "tiny", "--out", P("init"), "--seed",
                        "1"}),
              0);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string P(const std::string& name) const { return (root_ / name).string(); }
  void WriteLines(const std::string& name, const std::vector<std::string>& lines) {
    std::ofstream f(P(name));
    for (const auto& l : lines) f << l << "\n";
  }
  // `count` arithmetic problems as {prompt, completion, answer} lines.
  void WriteArithmetic(const std::string& name, int64_t count, uint64_t seed = 7) {
    std::vector<std::string> lines;
    for (const auto& p : cluster::MakeArithmeticProblems(seed, 0, count)) {
      lines.push_back(
          json{{"prompt", p.prompt}, {"completion", p.solution}, {"answer", p.answer}}.dump());
    }
    WriteLines(name, lines);
  }
  // `rlvr sft` with the init model, the data file and overrides.
  Outcome Sft(const std::string& data, const std::string& run, std::vector<std::string> extra) {
    WriteLines("sft.yaml",
               {"model:", "  chat_template: none", "optimizer:", "  lr: 3.0e-3",
                "  warmup_steps: 2", "sft:", "  batch_tokens: 512", "  max_seq_len: 64"});
    Args args = {"sft", P("sft.yaml"), "model.path=" + P("init"), "sft.train_path=" + P(data),
                 "run_dir=" + P(run)};
    for (auto& e : extra) args.push_back(std::move(e));
    return Capture(SftMain, args);
  }
  fs::path root_;
};

std::vector<json> ReadRows(const std::string& path) {
  auto rows = ReadJsonl(path);
  EXPECT_TRUE(rows.ok()) << rows.status();
  return rows.ok() ? *rows : std::vector<json>{};
}

TEST_F(SftEvalCliTest, SftWritesTheRunDirectoryAndTheLossGoesDown) {
  WriteArithmetic("train.jsonl", 64);
  Outcome o = Sft("train.jsonl", "run", {"sft.steps=40", "sft.save_every=20"});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_TRUE(Contains(o.err, "40 steps")) << o.err;
  const std::vector<json> rows = ReadRows(P("run/metrics.jsonl"));
  ASSERT_EQ(rows.size(), 40u);
  for (const char* key : {"train/loss", "train/lr", "train/grad_norm", "perf/tokens_per_s",
                          "batch/rows", "batch/examples", "batch/pad_fraction", "epoch"}) {
    EXPECT_TRUE(rows[0].contains(key)) << key;
  }
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += rows[i]["train/loss"].get<double>() / 5;
    last += rows[35 + i]["train/loss"].get<double>() / 5;
  }
  std::printf("sft loss: first 5 steps %.3f, last 5 steps %.3f\n", first, last);
  EXPECT_GT(first, 3.0);  // ~ln(vocab) for a random model
  EXPECT_LT(last, 0.6 * first);
  // Packing: rows hold several examples; warmup then a constant learning rate.
  EXPECT_GT(rows[10]["batch/examples"].get<int64_t>(), rows[10]["batch/rows"].get<int64_t>());
  EXPECT_NEAR(rows[0]["train/lr"].get<double>(), 1.5e-3, 1e-9);
  EXPECT_NEAR(rows[10]["train/lr"].get<double>(), 3e-3, 1e-9);
  // The run directory: resolved config, events, checkpoints, final model with its tokenizer.
  auto config = LoadRunConfig(P("run/config.yaml"), {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->sft().steps(), 40);
  EXPECT_EQ(config->model().path(), P("init"));
  bool events = false;
  for (const auto& e : fs::directory_iterator(P("run/tensorboard"))) {
    events |= Contains(e.path().filename().string(), "tfevents");
  }
  EXPECT_TRUE(events);
  EXPECT_TRUE(fs::exists(P("run/checkpoints/step-00000020/model/model.safetensors")));
  EXPECT_TRUE(fs::exists(P("run/checkpoints/step-00000040/optimizer.safetensors")));
  EXPECT_TRUE(fs::exists(P("run/final/tokenizer.json")));
  auto model = policy::LoadModel<float>(P("run/final"));
  ASSERT_TRUE(model.ok()) << model.status();
  auto init = policy::LoadModel<float>(P("init"));
  ASSERT_TRUE(init.ok());
  ASSERT_EQ(model->model->num_param_elements(), init->model->num_param_elements());
  EXPECT_NE(model->model->param_data()[0], init->model->param_data()[0]);
  auto summary = ReadFile(P("run/summary.json"));
  ASSERT_TRUE(summary.ok());
  json s = json::parse(*summary);
  EXPECT_EQ(s["examples"], 64);
  EXPECT_EQ(s["truncated"], 0);
  EXPECT_EQ(s["steps"], 40);
}

TEST_F(SftEvalCliTest, SftWithoutPackingPadsOneExamplePerRow) {
  WriteArithmetic("train.jsonl", 32);
  Outcome o = Sft("train.jsonl", "run",
                  {"sft.packing=false", "sft.steps=0", "sft.epochs=2", "sft.batch_tokens=256"});
  ASSERT_EQ(o.code, 0) << o.err;
  const std::vector<json> rows = ReadRows(P("run/metrics.jsonl"));
  ASSERT_GT(rows.size(), 2u);
  int64_t examples = 0;
  for (const json& r : rows) {
    EXPECT_EQ(r["batch/rows"], r["batch/examples"]);
    examples += r["batch/examples"].get<int64_t>();
  }
  EXPECT_EQ(examples, 64);  // two epochs of 32
  EXPECT_NEAR(rows.back()["epoch"].get<double>(), 2.0, 1e-12);
  EXPECT_LT(rows.back()["train/loss"].get<double>(), rows.front()["train/loss"].get<double>());
}

TEST_F(SftEvalCliTest, SftBadInputNamesTheLineAndKey) {
  WriteLines("missing.jsonl",
             {R"({"prompt": "1+1=", "completion": "2"})", R"({"prompt": "2+2=", "answer": "4"})"});
  Outcome o = Sft("missing.jsonl", "r1", {});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "missing.jsonl:2: missing field 'completion' (sft.completion_key)"))
      << o.err;

  WriteLines("noprompt.jsonl", {R"({"question": "1+1=", "completion": "2"})"});
  o = Sft("noprompt.jsonl", "r2", {});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "noprompt.jsonl:1: missing field 'prompt'")) << o.err;

  WriteLines("number.jsonl", {R"({"prompt": "1+1=", "completion": 2})"});
  o = Sft("number.jsonl", "r3", {});
  EXPECT_TRUE(Contains(o.err, "number.jsonl:1: non-string field 'completion'")) << o.err;

  WriteLines("empty_completion.jsonl", {R"({"prompt": "1+1=", "completion": "2"})",
                                        R"({"prompt": "1+2=", "completion": ""})"});
  o = Sft("empty_completion.jsonl", "r4", {});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err,
                       "empty_completion.jsonl:2: completion: the completion encodes to "
                       "no tokens"))
      << o.err;

  WriteLines("empty.jsonl", {});
  o = Sft("empty.jsonl", "r5", {});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "empty.jsonl: no examples (empty file)")) << o.err;

  o = Sft("absent.jsonl", "r6", {});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "absent.jsonl")) << o.err;

  WriteLines("array.jsonl", {R"(["1+1=", "2"])"});
  o = Sft("array.jsonl", "r7", {});
  EXPECT_TRUE(Contains(o.err, "array.jsonl:1: not a JSON object")) << o.err;

  o = Sft("missing.jsonl", "r8", {"sft.batch_tokens=0"});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "sft.batch_tokens")) << o.err;
  EXPECT_FALSE(fs::exists(P("r1/final")));
}

// `device: cuda` in a training config without a GPU (or without the CUDA backend) fails at
// startup naming the key, before the run directory exists, for `rlvr sft` and `rlvr train`;
// cpu is unchanged (the other tests). With a GPU the learner runs there
// (tests/cluster/learner_cuda_test.cc).
TEST_F(SftEvalCliTest, TrainingOnCudaWithoutGpuIsAClearStartupError) {
  auto n = kernels::cuda::DeviceCount();
  if (kernels::cuda::BuiltWithCuda() && n.ok() && *n > 0) GTEST_SKIP() << "a GPU is present";
  const std::string want = kernels::cuda::BuiltWithCuda()
                               ? "device: cuda: no CUDA device found"
                               : "device: cuda: built without the CUDA backend";
  WriteArithmetic("arith.jsonl", 4);
  Outcome o = Sft("arith.jsonl", "rcuda", {"device=cuda"});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, want)) << o.err;
  EXPECT_FALSE(fs::exists(P("rcuda")));

  WriteLines("train.yaml", {"device: cuda", "model:", "  chat_template: none"});
  o = Capture(TrainMain, {"train", P("train.yaml"), "model.path=" + P("init"),
                          "data.train_path=" + P("arith.jsonl"), "run_dir=" + P("tcuda")});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, want)) << o.err;
  EXPECT_FALSE(fs::exists(P("tcuda")));

  o = Sft("arith.jsonl", "rbad", {"device=tpu"});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "device")) << o.err;
}

TEST_F(SftEvalCliTest, SftTruncatesLongCompletionsAndDropsLongPrompts) {
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "word" + std::to_string(i) + " ";
  WriteLines("long.jsonl", {R"({"prompt": "1+1=", "completion": "\\boxed{2}"})",
                            json{{"prompt", "9+9="}, {"completion", long_text}}.dump(),
                            json{{"prompt", long_text}, {"completion", "x"}}.dump()});
  Outcome o = Sft("long.jsonl", "run", {"sft.steps=2", "sft.max_seq_len=24"});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_TRUE(Contains(o.err, "1 completions truncated and 1 examples dropped at max_seq_len 24"))
      << o.err;
  json s = json::parse(*ReadFile(P("run/summary.json")));
  EXPECT_EQ(s["truncated"], 1);
  EXPECT_EQ(s["dropped"], 1);
  EXPECT_EQ(s["examples"], 2);
  // Nothing left: an error naming the key.
  WriteLines("all_long.jsonl", {json{{"prompt", long_text}, {"completion", "x"}}.dump()});
  o = Sft("all_long.jsonl", "run2", {"sft.max_seq_len=24"});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "sft.max_seq_len: every prompt has 24 tokens or more")) << o.err;
}

// Exact 1 - C(n-c, k) / C(n, k).
double ExactPassAtK(int64_t n, int64_t c, int64_t k) {
  auto binom = [](int64_t a, int64_t b) -> long double {
    if (b < 0 || b > a) return 0;
    long double r = 1;
    for (int64_t i = 1; i <= b; ++i) r = r * (a - b + i) / i;
    return r;
  };
  return static_cast<double>(1.0L - binom(n - c, k) / binom(n, k));
}

TEST_F(SftEvalCliTest, EvalAfterSftMatchesARecountOfItsSamples) {
  // Memorize 4 problems, then sample them: greedy mostly right, samples at T = 1.3 mixed.
  WriteArithmetic("four.jsonl", 4, 3);
  Outcome o = Sft("four.jsonl", "run", {"sft.steps=80", "sft.batch_tokens=128"});
  ASSERT_EQ(o.code, 0) << o.err;
  const int64_t n = 8;
  o = Capture(EvalMain,
              {"eval", "--model", P("run/final"), "--in", P("four.jsonl"), "--n", std::to_string(n),
               "--temperature", "1.3", "--max-new-tokens", "40", "--seed", "5", "--greedy", "--out",
               P("samples.jsonl"), "--summary", P("summary.json")});
  ASSERT_EQ(o.code, 0) << o.err;
  std::printf("%s", o.out.c_str());
  EXPECT_TRUE(Contains(o.out, "4 problems x 8 samples")) << o.out;
  EXPECT_TRUE(Contains(o.out, "verifier math")) << o.out;
  const std::vector<json> lines = ReadRows(P("samples.jsonl"));
  ASSERT_EQ(lines.size(), 4u * (n + 1));
  std::map<int64_t, int64_t> c, seen;
  int64_t greedy_correct = 0, total = 0;
  for (const json& l : lines) {
    ASSERT_TRUE(l.contains("completion") && l.contains("correct") && l.contains("line"));
    if (l["greedy"].get<bool>()) {
      greedy_correct += l["correct"].get<bool>();
      continue;
    }
    const int64_t i = l["index"].get<int64_t>();
    ++seen[i];
    c[i] += l["correct"].get<bool>();
    total += l["correct"].get<bool>();
  }
  ASSERT_EQ(c.size(), 4u);
  for (const auto& [i, s] : seen) EXPECT_EQ(s, n) << "problem " << i;
  EXPECT_GT(total, 0) << "no correct sample: the test would be vacuous";
  EXPECT_LT(total, 4 * n) << "every sample correct: the test would be vacuous";
  json summary = json::parse(*ReadFile(P("summary.json")));
  ASSERT_EQ(summary["pass_at_k"].size(), 4u);  // 1, 2, 4, 8
  double prev = -1;
  for (int64_t k : {1, 2, 4, 8}) {
    double want = 0;
    for (const auto& [i, ci] : c) want += ExactPassAtK(n, ci, k);
    want /= 4;
    const double got = summary["pass_at_k"][std::to_string(k)].get<double>();
    EXPECT_NEAR(got, want, 1e-12) << "pass@" << k;
    EXPECT_GE(got, prev);
    prev = got;
  }
  EXPECT_NEAR(summary["pass_at_k"]["1"].get<double>(), static_cast<double>(total) / (4 * n), 1e-12);
  EXPECT_NEAR(summary["greedy_accuracy"].get<double>(), greedy_correct / 4.0, 1e-12);
}

TEST_F(SftEvalCliTest, EvalBadInputIsAClearError) {
  WriteLines("problems.jsonl",
             {R"({"prompt": "1+1=", "answer": "2"})", R"({"prompt": "2+2=", "solution": "4"})"});
  Outcome o = Capture(EvalMain, {"eval", "--model", P("init"), "--in", P("problems.jsonl")});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "problems.jsonl:2")) << o.err;
  EXPECT_TRUE(Contains(o.err, "answer")) << o.err;

  o = Capture(EvalMain, {"eval", "--model", P("init"), "--in", P("problems.jsonl"), "--n", "0"});
  EXPECT_EQ(o.code, 2);
  EXPECT_TRUE(Contains(o.err, "--n: must be >= 1")) << o.err;

  WriteLines("ok.jsonl", {R"({"prompt": "1+1=", "answer": "2"})"});
  o = Capture(EvalMain, {"eval", "--model", P("nowhere"), "--in", P("ok.jsonl")});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, P("nowhere"))) << o.err;

  o = Capture(EvalMain, {"eval", "--model", P("init"), "--in", P("absent.jsonl")});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "absent.jsonl")) << o.err;

  WriteLines("noprompt.jsonl", {R"({"question": "1+1=", "answer": "2"})"});
  o = Capture(EvalMain, {"eval", "--model", P("init"), "--in", P("noprompt.jsonl")});
  EXPECT_TRUE(Contains(o.err, "noprompt.jsonl:1: missing field 'prompt'")) << o.err;

  // --verifier auto routes by data_source: an unknown one names the line.
  WriteLines("sources.jsonl", {R"({"prompt": "1+1=", "answer": "2", "data_source": "gsm8k"})",
                               R"({"prompt": "2+2=", "answer": "4", "data_source": "poetry"})"});
  o = Capture(EvalMain, {"eval", "--model", P("init"), "--in", P("sources.jsonl")});
  EXPECT_EQ(o.code, 1);
  EXPECT_TRUE(Contains(o.err, "sources.jsonl:2")) << o.err;
  EXPECT_TRUE(Contains(o.err, "poetry")) << o.err;

  o = Capture(EvalMain,
              {"eval", "--model", P("init"), "--in", P("ok.jsonl"), "--n", "4", "--k", "8"});
  EXPECT_EQ(o.code, 2);
  EXPECT_TRUE(Contains(o.err, "--k: 8 is outside 1..--n (4)")) << o.err;
}

}  // namespace
}  // namespace rlvr::cli
