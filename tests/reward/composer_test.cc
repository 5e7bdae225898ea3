#include "reward/composer.h"

#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/config.h"
#include "core/jsonl.h"
#include "gtest/gtest.h"

namespace rlvr::reward {
namespace {

// Test verifiers: one that throws, one that hangs until released, one that returns NaN.
absl::Notification* HangRelease() {
  static auto* n = new absl::Notification();  // intentionally leaked: hung threads use it
  return n;
}

class ThrowingVerifier : public Verifier {
 public:
  std::string name() const override { return "throws"; }
  absl::StatusOr<VerdictResult> Score(const Sample& s) const override {
    if (s.completion.find("boom") != std::string::npos) throw std::runtime_error("kaboom");
    VerdictResult v;
    v.reward = 1;
    return v;
  }
};

class HangingVerifier : public Verifier {
 public:
  std::string name() const override { return "hangs"; }
  absl::StatusOr<VerdictResult> Score(const Sample& s) const override {
    if (s.completion.find("hang") != std::string::npos) HangRelease()->WaitForNotification();
    VerdictResult v;
    v.reward = 1;
    return v;
  }
};

class NanVerifier : public Verifier {
 public:
  std::string name() const override { return "nan"; }
  absl::StatusOr<VerdictResult> Score(const Sample&) const override {
    VerdictResult v;
    v.reward = std::numeric_limits<double>::quiet_NaN();
    return v;
  }
};

template <typename V>
VerifierFactory FactoryOf() {
  return [](const VerifierOptions&) -> absl::StatusOr<std::unique_ptr<Verifier>> {
    return std::unique_ptr<Verifier>(new V());
  };
}

std::unique_ptr<VerifierRegistry> TestRegistry() {
  auto r = std::make_unique<VerifierRegistry>();
  EXPECT_TRUE(RegisterBuiltinVerifiers(r.get()).ok());
  EXPECT_TRUE(r->Register("throws", FactoryOf<ThrowingVerifier>()).ok());
  EXPECT_TRUE(r->Register("hangs", FactoryOf<HangingVerifier>()).ok());
  EXPECT_TRUE(r->Register("nan", FactoryOf<NanVerifier>()).ok());
  return r;
}

Sample MakeSample(std::string completion, nlohmann::json record, int64_t line) {
  Sample s;
  s.completion = std::move(completion);
  s.record = std::make_shared<const nlohmann::json>(std::move(record));
  s.source = "train.jsonl";
  s.line = line;
  s.max_tokens = 100;
  return s;
}

RewardComponentSpec Spec(std::string name, double weight, std::vector<std::string> sources = {},
                         VerifierOptions options = {}) {
  RewardComponentSpec c;
  c.name = std::move(name);
  c.weight = weight;
  c.data_sources = std::move(sources);
  c.options = std::move(options);
  return c;
}

TEST(ComposerTest, WeightedTotalAndPerComponentRewards) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.components = {Spec("countdown", 1.0), Spec("format", 0.1),
                         Spec("overlong", 1.0, {}, {{"buffer_tokens", "20"}})};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok()) << composer.status();
  const nlohmann::json rec = {{"target", 32}, {"nums", {3, 4, 5}}};
  std::vector<Sample> samples = {
      MakeSample("<think>t</think><answer>(3+5)*4</answer>", rec, 1),  // right, formatted
      MakeSample("<answer>(3+5)*4</answer>", rec, 2),                  // right, no think
      MakeSample("<think>t</think><answer>3+4+5</answer>", rec, 3),    // wrong, formatted
  };
  samples[1].completion_tokens = 90;  // -0.5 overlong
  auto out = (*composer)->Score(samples);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->samples.size(), 3u);
  EXPECT_DOUBLE_EQ(out->samples[0].total, 1.1);
  EXPECT_DOUBLE_EQ(out->samples[1].total, 1.0 - 0.5);
  EXPECT_DOUBLE_EQ(out->samples[2].total, 0.1);
  EXPECT_EQ(out->samples[0].components, (std::vector<double>{1.0, 1.0, 0.0}));
  EXPECT_EQ(out->samples[1].components, (std::vector<double>{1.0, 0.0, -0.5}));
  EXPECT_EQ(out->samples[2].details[0], "wrong_value");
  EXPECT_EQ(out->judged, 3);
  EXPECT_EQ(out->correct, 2);
  EXPECT_NEAR(out->accuracy, 2.0 / 3.0, 1e-12);
  ASSERT_EQ(out->components.size(), 3u);
  EXPECT_EQ(out->components[1].name, "format");
  EXPECT_NEAR(out->components[1].mean, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(out->components[2].applied, 3);
  EXPECT_NEAR(out->total_mean, (1.1 + 0.5 + 0.1) / 3, 1e-12);
  EXPECT_EQ(out->errors, 0);

  const auto metrics = RewardMetrics(*out);
  std::map<std::string, double> m(metrics.begin(), metrics.end());
  EXPECT_NEAR(m.at("critic/score/mean"), (1.1 + 0.5 + 0.1) / 3, 1e-12);
  EXPECT_NEAR(m.at("reward/format/mean"), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.at("reward/overlong/mean"), -0.5 / 3.0, 1e-12);
  EXPECT_NEAR(m.at("reward/accuracy"), 2.0 / 3.0, 1e-12);
}

TEST(ComposerTest, AccuracyVerifierChosenPerExampleByDataSource) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.data_source_key = "data_source";
  settings.components = {Spec("math", 1.0, {"gsm8k", "math500"}),
                         Spec("countdown", 1.0, {"countdown"}), Spec("format", 0.5)};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok()) << composer.status();
  std::vector<Sample> samples = {
      MakeSample("\\boxed{72}", {{"data_source", "gsm8k"}, {"answer", "#### 72"}}, 1),
      MakeSample("<answer>(3+5)*4</answer>",
                 {{"data_source", "countdown"}, {"target", 32}, {"nums", {3, 4, 5}}}, 2),
  };
  auto out = (*composer)->Score(samples);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->samples[0].applied, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(out->samples[1].applied, (std::vector<uint8_t>{0, 1, 1}));
  EXPECT_EQ(out->samples[0].components[0], 1.0);
  EXPECT_EQ(out->samples[1].components[1], 1.0);
  EXPECT_EQ(out->correct, 2);
  EXPECT_EQ(out->components[0].applied, 1);
  EXPECT_EQ(out->components[2].applied, 2);
}

TEST(ComposerTest, LineWithoutTheNeededFieldIsAnErrorNamingLineAndField) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.components = {Spec("math", 1.0)};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok());
  std::vector<Sample> samples = {MakeSample("\\boxed{1}", {{"answer", "1"}}, 11),
                                 MakeSample("\\boxed{1}", {{"question", "?"}}, 12)};
  auto out = (*composer)->Score(samples);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("train.jsonl:12"), absl::string_view::npos) << out.status();
  EXPECT_NE(out.status().message().find("'answer'"), absl::string_view::npos) << out.status();
  EXPECT_NE(out.status().message().find("math"), absl::string_view::npos) << out.status();
  // The same check is available up front, for a whole dataset.
  absl::Status s = (*composer)->CheckRecord({{"question", "?"}}, "gsm8k_train.jsonl", 3);
  EXPECT_NE(s.message().find("gsm8k_train.jsonl:3"), absl::string_view::npos) << s;
}

TEST(ComposerTest, MissingOrUnknownDataSourceIsAnError) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.data_source_key = "data_source";
  settings.components = {Spec("math", 1.0, {"gsm8k"})};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok());
  auto missing = (*composer)->Score({MakeSample("x", {{"answer", "1"}}, 4)});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("train.jsonl:4"), absl::string_view::npos);
  EXPECT_NE(missing.status().message().find("'data_source'"), absl::string_view::npos)
      << missing.status();
  auto unknown =
      (*composer)->Score({MakeSample("x", {{"answer", "1"}, {"data_source", "aime"}}, 5)});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'aime'"), absl::string_view::npos) << unknown.status();
}

TEST(ComposerTest, ThrowingVerifierCostsZeroAndIsLoggedNotFatal) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.components = {Spec("throws", 1.0), Spec("format", 1.0)};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok());
  auto out = (*composer)->Score(
      {MakeSample("<think>a</think><answer>boom</answer>", {}, 1), MakeSample("fine", {}, 2)});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->samples[0].components[0], 0.0);
  EXPECT_EQ(out->samples[0].components[1], 1.0);  // the other component still scored
  EXPECT_EQ(out->samples[0].errors, 1);
  EXPECT_EQ(out->samples[0].details[0], "error");
  EXPECT_EQ(out->samples[1].components[0], 1.0);
  EXPECT_EQ(out->errors, 1);
  EXPECT_EQ(out->components[0].errors, 1);
  ASSERT_EQ(out->error_messages.size(), 1u);
  EXPECT_NE(out->error_messages[0].find("kaboom"), std::string::npos);
  EXPECT_NE(out->error_messages[0].find("train.jsonl:1"), std::string::npos);
}

TEST(ComposerTest, HangingVerifierTimesOutAndTheRunGoesOn) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.threads = 2;
  settings.components = {Spec("hangs", 1.0)};
  settings.components[0].timeout_seconds = 0.1;
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok());
  std::vector<Sample> samples;
  for (int i = 0; i < 6; ++i) samples.push_back(MakeSample(i == 2 ? "hang" : "ok", {}, i + 1));
  auto out = (*composer)->Score(samples);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->timeouts, 1);
  EXPECT_EQ(out->samples[2].details[0], "timeout");
  EXPECT_EQ(out->samples[2].total, 0.0);
  int ones = 0;
  for (const auto& s : out->samples) ones += s.total == 1.0;
  EXPECT_EQ(ones, 5);
  // The next batch still runs at full capacity.
  auto again = (*composer)->Score({MakeSample("ok", {}, 1), MakeSample("ok", {}, 2)});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->samples[1].total, 1.0);
  HangRelease()->Notify();
}

TEST(ComposerTest, NonFiniteRewardIsAnErrorScoredZero) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.components = {Spec("nan", 1.0)};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok());
  auto out = (*composer)->Score({MakeSample("x", {}, 1)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->samples[0].total, 0.0);
  EXPECT_EQ(out->errors, 1);
}

TEST(ComposerTest, UnknownVerifierNamesTheConfigKey) {
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.components = {Spec("format", 1.0), Spec("mathh", 1.0)};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_FALSE(composer.ok());
  EXPECT_NE(composer.status().message().find("reward.verifiers.1"), absl::string_view::npos)
      << composer.status();
}

TEST(ComposerSettingsTest, FromRunConfig) {
  proto::RunConfig config = DefaultRunConfig();
  ASSERT_TRUE(ApplyOverride("reward.verifiers=[{name: math, weight: 1, data_sources: [gsm8k]}, "
                            "{name: overlong, weight: 1, options: {timeout_seconds: '2'}}]",
                            &config)
                  .ok());
  ASSERT_TRUE(ApplyOverride("reward.overlong_buffer_tokens=64", &config).ok());
  ASSERT_TRUE(ApplyOverride("data.data_source_key=data_source", &config).ok());
  auto s = ComposerSettingsFromConfig(config);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->components.size(), 2u);
  EXPECT_EQ(s->data_source_key, "data_source");
  EXPECT_EQ(s->components[0].data_sources, (std::vector<std::string>{"gsm8k"}));
  EXPECT_EQ(s->components[1].options.at("buffer_tokens"), "64");
  EXPECT_EQ(s->components[1].options.count("timeout_seconds"), 0u);
  EXPECT_EQ(s->components[1].timeout_seconds, 2.0);
  EXPECT_EQ(s->components[0].options.at("answer_key"), config.data().answer_key());

  ASSERT_TRUE(ApplyOverride("data.data_source_key=''", &config).ok());
  auto bad = ComposerSettingsFromConfig(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("reward.verifiers.0.data_sources"), absl::string_view::npos)
      << bad.status();
}

TEST(ComposerSettingsTest, CreateRewardComposerLoadsPlugins) {
  proto::RunConfig config = DefaultRunConfig();
  config.mutable_reward()->add_plugins(RLVR_EXAMPLE_PLUGIN_PATH);
  ASSERT_TRUE(ApplyOverride("reward.verifiers=[{name: keyword, weight: 2, options: {keyword: so}}]",
                            &config)
                  .ok());
  auto composer = CreateRewardComposer(config);
  ASSERT_TRUE(composer.ok()) << composer.status();
  auto out = (*composer)->Score({MakeSample("and so on", {}, 1), MakeSample("no", {}, 2)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->samples[0].total, 2.0);
  EXPECT_EQ(out->samples[1].total, 0.0);

  config.mutable_reward()->set_plugins(0, "/nonexistent/plugin.so");
  auto bad = CreateRewardComposer(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("reward.plugins.0"), absl::string_view::npos)
      << bad.status();
}

// The real GSM8K file through the composer: gold answers score 1, and every line passes
// CheckRecord.
TEST(ComposerTest, Gsm8kGoldAnswersScoreOne) {
  auto records = ReadJsonl("../shared/data/gsm8k_test.jsonl");
  ASSERT_TRUE(records.ok()) << records.status();
  auto registry = TestRegistry();
  ComposerSettings settings;
  settings.components = {Spec("math", 1.0)};
  auto composer = RewardComposer::Create(settings, *registry);
  ASSERT_TRUE(composer.ok());
  std::vector<Sample> samples;
  for (size_t i = 0; i < 200 && i < records->size(); ++i) {
    const nlohmann::json& r = (*records)[i];
    ASSERT_TRUE((*composer)->CheckRecord(r, "gsm8k_test.jsonl", i + 1).ok());
    const std::string answer = r["answer"];
    const std::string gold = answer.substr(answer.rfind("####") + 4);
    samples.push_back(MakeSample("<think>...</think> \\boxed{" + gold + "}", r, i + 1));
  }
  auto out = (*composer)->Score(samples);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->judged, 200);
  EXPECT_EQ(out->correct, 200);
}

}  // namespace
}  // namespace rlvr::reward
