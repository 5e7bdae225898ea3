// AdamW against torch.optim.AdamW + clip_grad_norm_ + a warmup/cosine LambdaLR
// (tests/fixtures/models/optim/adamw.safetensors, written by tools/make_fixtures.py optim),
// schedules against hand-computed values, and state save/restore.
#include "policy/optim/adamw.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr::policy {
namespace {

using ::testing::HasSubstr;

std::vector<float> Get(const SafetensorsFile& f, const std::string& name) {
  const TensorView* t = f.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  std::vector<float> out(t->num_elements());
  std::memcpy(out.data(), t->data.data(), out.size() * sizeof(float));
  return out;
}

AdamWConfig FixtureConfig() {
  AdamWConfig c;
  c.lr = 1e-2;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = 0.1;
  c.max_grad_norm = 1.0;
  c.warmup_steps = 2;
  c.total_steps = 6;
  c.schedule = LrSchedule::kCosine;
  c.min_lr_ratio = 0.1;
  return c;
}

TEST(AdamWTest, MatchesTorch) {
  auto f = SafetensorsFile::Open("tests/fixtures/models/optim/adamw.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  std::vector<float> a = Get(**f, "init.a"), b = Get(**f, "init.b");
  std::vector<float> ga(a.size()), gb(b.size());
  auto opt = AdamW::Create(FixtureConfig(), {{.name = "a",
                                              .data = a.data(),
                                              .grad = ga.data(),
                                              .numel = static_cast<int64_t>(a.size()),
                                              .decay = true},
                                             {.name = "b",
                                              .data = b.data(),
                                              .grad = gb.data(),
                                              .numel = static_cast<int64_t>(b.size()),
                                              .decay = false}});
  ASSERT_TRUE(opt.ok()) << opt.status();
  int64_t compared = 0, clipped = 0;
  for (int step = 0; step < 6; ++step) {
    // Copied into the buffers the optimizer points at (never reassigned).
    std::vector<float> na = Get(**f, "grad." + std::to_string(step) + ".a");
    std::vector<float> nb = Get(**f, "grad." + std::to_string(step) + ".b");
    ASSERT_EQ(na.size(), ga.size());
    ASSERT_EQ(nb.size(), gb.size());
    std::copy(na.begin(), na.end(), ga.begin());
    std::copy(nb.begin(), nb.end(), gb.begin());
    StepStats st = opt->Step();
    EXPECT_FALSE(st.skipped);
    EXPECT_NEAR(st.grad_norm, Get(**f, "norm." + std::to_string(step))[0], 1e-5);
    clipped += st.clipped;
    std::vector<float> wa = Get(**f, "param." + std::to_string(step) + ".a");
    std::vector<float> wb = Get(**f, "param." + std::to_string(step) + ".b");
    for (size_t i = 0; i < wa.size(); ++i, ++compared) EXPECT_NEAR(a[i], wa[i], 2e-6) << step;
    for (size_t i = 0; i < wb.size(); ++i, ++compared) EXPECT_NEAR(b[i], wb[i], 2e-6) << step;
  }
  EXPECT_EQ(compared, 6 * 19);
  EXPECT_EQ(clipped, 3);
  EXPECT_EQ(opt->step(), 6);
}

TEST(AdamWTest, Schedules) {
  AdamWConfig c;
  c.lr = 1.0;
  c.warmup_steps = 4;
  c.total_steps = 14;
  c.schedule = LrSchedule::kConstant;
  EXPECT_DOUBLE_EQ(LearningRate(c, 0), 0.25);
  EXPECT_DOUBLE_EQ(LearningRate(c, 3), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(c, 100), 1.0);
  c.schedule = LrSchedule::kCosine;
  EXPECT_DOUBLE_EQ(LearningRate(c, 4), 1.0);
  EXPECT_NEAR(LearningRate(c, 9), 0.5, 1e-12);
  EXPECT_NEAR(LearningRate(c, 14), 0.0, 1e-12);
  EXPECT_NEAR(LearningRate(c, 50), 0.0, 1e-12);
  c.min_lr_ratio = 0.1;
  EXPECT_NEAR(LearningRate(c, 9), 0.55, 1e-12);
  c.schedule = LrSchedule::kLinear;
  EXPECT_NEAR(LearningRate(c, 9), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_EQ(ParseLrSchedule("cosine").value(), LrSchedule::kCosine);
  EXPECT_FALSE(ParseLrSchedule("step").ok());
}

TEST(AdamWTest, NonFiniteGradientSkipsTheStep) {
  std::vector<float> w = {1, 2}, g = {NAN, 1};
  auto opt = AdamW::Create({}, {{.name = "w", .data = w.data(), .grad = g.data(), .numel = 2}});
  ASSERT_TRUE(opt.ok());
  StepStats st = opt->Step();
  EXPECT_TRUE(st.skipped);
  EXPECT_EQ(opt->step(), 0);
  EXPECT_EQ(w, (std::vector<float>{1, 2}));
}

TEST(AdamWTest, BadConfigNamesTheField) {
  AdamWConfig c;
  c.beta2 = 1.5;
  auto opt = AdamW::Create(c, {});
  EXPECT_THAT(std::string(opt.status().message()), HasSubstr("beta2"));
  c = {};
  c.schedule = LrSchedule::kCosine;
  c.total_steps = 0;
  EXPECT_THAT(std::string(AdamW::Create(c, {}).status().message()), HasSubstr("total_steps"));
  std::vector<float> w(2), g(2);
  auto dup = AdamW::Create({}, {{.name = "w", .data = w.data(), .grad = g.data(), .numel = 2},
                                {.name = "w", .data = w.data(), .grad = g.data(), .numel = 2}});
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("duplicate parameter w"));
}

TEST(AdamWTest, SaveAndRestoreContinueIdentically) {
  const std::string path = std::filesystem::temp_directory_path() /
                           ("rlvr_adamw_" + std::to_string(getpid()) + ".safetensors");
  AdamWConfig c;
  c.lr = 0.1;
  c.weight_decay = 0.01;
  std::vector<float> w1 = {1, -2, 3}, g1(3), w2(3), g2(3);
  auto o1 = AdamW::Create(c, {{.name = "w", .data = w1.data(), .grad = g1.data(), .numel = 3}});
  ASSERT_TRUE(o1.ok());
  for (int s = 0; s < 3; ++s) {
    g1[0] = 0.1f * s;
    g1[1] = -0.3f;
    g1[2] = 0.2f;
    o1->Step();
  }
  ASSERT_TRUE(o1->Save(path).ok());
  std::copy(w1.begin(), w1.end(), w2.begin());
  auto o2 = AdamW::Create(c, {{.name = "w", .data = w2.data(), .grad = g2.data(), .numel = 3}});
  ASSERT_TRUE(o2.ok());
  ASSERT_TRUE(o2->Load(path).ok());
  EXPECT_EQ(o2->step(), 3);
  for (int i = 0; i < 3; ++i) g1[i] = g2[i] = i == 2 ? -0.5f : 0.5f;
  o1->Step();
  o2->Step();
  EXPECT_EQ(w1, w2);

  // A state for other parameters is rejected, naming the tensor.
  std::vector<float> x(4), gx(4);
  auto o3 = AdamW::Create(c, {{.name = "x", .data = x.data(), .grad = gx.data(), .numel = 4}});
  auto s = o3->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("exp_avg"));
  auto o4 = AdamW::Create(c, {{.name = "w", .data = x.data(), .grad = gx.data(), .numel = 4}});
  s = o4->Load(path);
  EXPECT_THAT(std::string(s.message()), HasSubstr("3 elements, expected 4"));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace rlvr::policy
