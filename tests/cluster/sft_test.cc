// SFT pieces: packed token batches (layout, first fit), the step planner, and one SFT update on a
// packed batch against the same examples padded one per row.
#include "cluster/sft.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "cluster/learner.h"
#include "core/status.h"
#include "gtest/gtest.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"

namespace rlvr::cluster {
namespace {

using Ids = std::vector<int32_t>;

TEST(PackedBatchTest, FirstFitLayoutPositionsAndMask) {
  // Lengths 5, 6, 3, 2 into rows of 8: [5 + 3] [6 + 2].
  std::vector<Ids> prompts = {{1, 2}, {3, 4, 5}, {6}, {7}};
  std::vector<Ids> completions = {{11, 12, 13}, {14, 15, 16}, {17, 18}, {19}};
  auto b = MakePackedTokenBatch(prompts, completions, 8);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->B, 2);
  ASSERT_EQ(b->T, 8);
  EXPECT_EQ(Ids(b->ids.begin(), b->ids.begin() + 8), (Ids{1, 2, 11, 12, 13, 6, 17, 18}));
  EXPECT_EQ(Ids(b->ids.begin() + 8, b->ids.end()), (Ids{3, 4, 5, 14, 15, 16, 7, 19}));
  EXPECT_EQ(b->positions, (Ids{0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 4, 5, 0, 1}));
  // Targets: each example's completion tokens, predicted from the position before them; the last
  // token of an example predicts nothing (never the next example's first token).
  EXPECT_EQ(Ids(b->targets.begin(), b->targets.begin() + 8), (Ids{-1, 11, 12, 13, -1, 17, 18, -1}));
  EXPECT_EQ(Ids(b->targets.begin() + 8, b->targets.end()), (Ids{-1, -1, 14, 15, 16, -1, 19, -1}));
  EXPECT_EQ(b->num_target_tokens(), 3 + 3 + 2 + 1);
  EXPECT_EQ(b->prompt_len, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(b->completion_len, (std::vector<int64_t>{5, 4}));
  EXPECT_EQ(b->examples_per_row, (std::vector<int64_t>{2, 2}));
  // Slicing keeps the positions.
  TokenBatch s = SliceRows(*b, 1, 2);
  EXPECT_EQ(s.positions, (Ids{0, 1, 2, 3, 4, 5, 0, 1}));
}

TEST(PackedBatchTest, PaddingIsASequenceOfItsOwn) {
  auto b = MakePackedTokenBatch({{1, 2}, {3}}, {{4, 5, 6}, {7, 8, 9, 10, 11}}, 6);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->B, 2);
  ASSERT_EQ(b->T, 6);
  EXPECT_EQ(b->positions, (Ids{0, 1, 2, 3, 4, 0, 0, 1, 2, 3, 4, 5}));
}

TEST(PackedBatchTest, BadExamplesAreErrors) {
  auto b = MakePackedTokenBatch({{1, 2, 3}}, {{4, 5, 6}}, 5);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(b.status().message()).find("example 0 has 6 tokens"), std::string::npos)
      << b.status();
  b = MakePackedTokenBatch({{1}, {}}, {{4}, {5}}, 5);
  EXPECT_NE(std::string(b.status().message()).find("example 1 has an empty prompt"),
            std::string::npos)
      << b.status();
}

TEST(PlanSftStepsTest, StepsStayWithinTheTokenBudget) {
  std::mt19937 rng(3);
  std::vector<int64_t> lengths(50);
  for (auto& l : lengths) l = 2 + rng() % 30;
  auto order = [](int64_t slot) { return slot % 50; };
  for (bool packing : {true, false}) {
    // Two epochs: every example twice, in order, each step within 128 positions.
    auto plan = PlanSftSteps(order, lengths, packing, 32, 128, 0, 100);
    std::vector<int64_t> flat;
    for (const auto& step : plan) {
      ASSERT_FALSE(step.empty());
      std::vector<Ids> prompts, completions;
      int64_t longest = 0;
      for (int64_t i : step) {
        flat.push_back(i);
        prompts.push_back(Ids(1, 1));
        completions.push_back(Ids(lengths[i] - 1, 2));
        longest = std::max(longest, lengths[i]);
      }
      int64_t footprint = static_cast<int64_t>(step.size()) * longest;
      if (packing) {
        auto b = MakePackedTokenBatch(prompts, completions, 32);
        ASSERT_TRUE(b.ok());
        footprint = b->B * b->T;  // the planner's estimate is the batch's real size
      }
      EXPECT_LE(footprint, 128) << (packing ? "packed" : "padded");
    }
    ASSERT_EQ(flat.size(), 100u);
    for (int64_t s = 0; s < 100; ++s) EXPECT_EQ(flat[s], s % 50);
    if (packing) {
      auto padded = PlanSftSteps(order, lengths, false, 32, 128, 0, 100);
      EXPECT_LT(plan.size(), padded.size()) << "packing should need fewer steps";
    }
  }
  // A step budget stops the plan there.
  EXPECT_EQ(PlanSftSteps(order, lengths, true, 32, 128, 7, 0).size(), 7u);
}

// One SFT update: a packed batch and the same examples one per padded row give the same loss and
// gradient norm (attention never crosses an example, and the loss is the mean over targets).
TEST(SftUpdateTest, PackedEqualsPadded) {
  auto cfg = policy::Preset("qwen3_moe", "tiny");
  ASSERT_TRUE(cfg.ok());
  cfg->vocab_size = 64;
  std::vector<Ids> prompts, completions;
  std::mt19937 rng(5);
  for (int64_t len : {3, 7, 4, 9, 2}) {
    Ids p(2 + rng() % 3), c(len);
    for (auto& x : p) x = static_cast<int32_t>(rng() % 64);
    for (auto& x : c) x = static_cast<int32_t>(rng() % 64);
    prompts.push_back(p);
    completions.push_back(c);
  }
  auto run = [&](bool packed) -> Learner::SftStats {
    auto m = policy::CausalLM<float>::Create(*cfg);
    RLVR_CHECK(m.ok());
    (*m)->InitRandom(9, 0.2);
    policy::AdamWConfig ac;
    ac.lr = 1e-3;
    auto opt = policy::AdamW::Create(ac, TrainableParams(m->get()));
    RLVR_CHECK(opt.ok());
    Learner learner(m->get(), &*opt);
    auto batch = packed ? MakePackedTokenBatch(prompts, completions, 16)
                        : MakeTokenBatch(prompts, completions);
    RLVR_CHECK(batch.ok());
    if (packed) {
      EXPECT_LT(batch->B, 5);
    }
    auto st = learner.SftUpdate(*batch, 0.0);
    RLVR_CHECK(st.ok());
    return *st;
  };
  const Learner::SftStats a = run(true), b = run(false);
  EXPECT_EQ(a.target_tokens, 25);
  EXPECT_EQ(b.target_tokens, 25);
  EXPECT_GT(b.loss, 1.0);
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * b.loss);
  EXPECT_GT(b.grad_norm, 0.0);
  EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-4 * b.grad_norm);
  EXPECT_FALSE(a.skipped);
  EXPECT_GT(a.lr, 0.0);
  std::printf("packed loss %.7f grad_norm %.7f; padded loss %.7f grad_norm %.7f\n", a.loss,
              a.grad_norm, b.loss, b.grad_norm);
}

}  // namespace
}  // namespace rlvr::cluster
