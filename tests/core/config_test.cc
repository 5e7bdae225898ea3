#include "core/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<proto::RunConfig> FromText(const std::string& text, const std::string& name) {
  proto::RunConfig c = DefaultRunConfig();
  absl::Status s = MergeConfigText(text, name, &c);
  if (!s.ok()) return s;
  return c;
}

TEST(ConfigTest, MergesNestedYaml) {
  auto c = FromText(
      "seed: 7\n"
      "grpo:\n"
      "  group_size: 16\n"
      "  clip_eps_high: 0.3\n"
      "rollout:\n"
      "  stop: [\"</answer>\", \"\\n\\n\"]\n"
      "reward:\n"
      "  verifiers:\n"
      "    - name: math\n"
      "      weight: 1.0\n"
      "    - name: format\n"
      "      weight: 0.1\n"
      "      options: {tag: think}\n",
      "run.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->seed(), 7u);
  EXPECT_EQ(c->grpo().group_size(), 16);
  EXPECT_FLOAT_EQ(c->grpo().clip_eps_high(), 0.3f);
  // Untouched fields keep their defaults.
  EXPECT_EQ(c->grpo().prompts_per_step(), DefaultRunConfig().grpo().prompts_per_step());
  ASSERT_EQ(c->rollout().stop_size(), 2);
  EXPECT_EQ(c->rollout().stop(1), "\n\n");
  ASSERT_EQ(c->reward().verifiers_size(), 2);  // the list replaced the default one
  EXPECT_EQ(c->reward().verifiers(1).name(), "format");
  EXPECT_EQ(c->reward().verifiers(1).options().at("tag"), "think");
}

TEST(ConfigTest, AcceptsJson) {
  auto c = FromText("{\"grpo\": {\"group_size\": 4, \"loss_agg_mode\": \"seq_mean_token_mean\"}}",
                    "run.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpo().group_size(), 4);
  EXPECT_EQ(c->grpo().loss_agg_mode(), "seq_mean_token_mean");
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndClosestKey) {
  auto c = FromText("seed: 1\ngrpo:\n  gruop_size: 16\n", "config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("config.yaml:3"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpo.gruop_size"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("did you mean 'grpo.group_size'"));
}

TEST(ConfigTest, KeyAtWrongLevelSuggestsFullPath) {
  auto c = FromText("group_size: 16\n", "config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("'grpo.group_size'"));
}

TEST(ConfigTest, WrongTypeNamesKeyAndExpectedType) {
  auto c = FromText("grpo:\n  group_size: lots\n", "config.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("config.yaml:2"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpo.group_size: expected an integer, got 'lots'"));

  c = FromText("grpo:\n  group_size: 2.5\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("expected an integer"));

  c = FromText("optimizer:\n  lr: fast\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("optimizer.lr: expected a number"));

  c = FromText("grpo:\n  dynamic_sampling: maybe\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("expected a boolean"));

  c = FromText("grpo: 3\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpo: expected a mapping"));

  c = FromText("rollout:\n  stop: \"</answer>\"\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("rollout.stop: expected a list of strings"));

  c = FromText("seed: -1\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("seed: expected a non-negative integer"));

  c = FromText("grpo:\n  group_size: 99999999999\n", "c.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("out of range"));
}

TEST(ConfigTest, SyntaxErrorNamesLine) {
  auto c = FromText("grpo:\n  group_size: [1, 2\n", "bad.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("bad.yaml:"));
}

TEST(ConfigTest, DuplicateKeyIsAnError) {
  auto c = FromText("seed: 1\nseed: 2\n", "dup.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("dup.yaml:2: duplicate key 'seed'"));
}

TEST(ConfigTest, DocumentMustBeAMapping) {
  auto c = FromText("- 1\n- 2\n", "list.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("expected a mapping"));
}

TEST(ConfigTest, DeepNestingIsRefusedWithoutCrashing) {
  std::string deep(100000, '[');
  auto c = FromText(deep, "deep.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("nesting too deep"));
  std::string dashes;
  for (int i = 0; i < 500; ++i) dashes += "- ";
  c = FromText(dashes + "x\n", "dash.yaml");
  ASSERT_FALSE(c.ok());
}

TEST(ConfigTest, MultipleDocumentsAndJunkAreErrors) {
  auto c = FromText("seed: 1\n---\nseed: 2\n", "two.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("two.yaml:2: a second YAML document"));
  // This input made yaml-cpp's LoadAll loop forever (found by fuzz_config).
  c = FromText(",s", "junk.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("junk.yaml: not a YAML or JSON mapping"));
  c = FromText("---\n# comment only\n", "c.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
}

TEST(ConfigTest, EmptyFileKeepsDefaults) {
  auto c = FromText("", "empty.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->SerializeAsString(), DefaultRunConfig().SerializeAsString());
}

TEST(ConfigTest, OverridesScalarsListsAndNested) {
  proto::RunConfig c = DefaultRunConfig();
  ASSERT_TRUE(ApplyOverride("grpo.group_size=16", &c).ok());
  ASSERT_TRUE(ApplyOverride("optimizer.lr=3e-5", &c).ok());
  ASSERT_TRUE(ApplyOverride("rollout.stop=[\"</answer>\", \"User:\"]", &c).ok());
  ASSERT_TRUE(ApplyOverride("reward.verifiers=[{name: math, weight: 1}, {name: format}]", &c).ok());
  ASSERT_TRUE(ApplyOverride("reward.verifiers.1.weight=0.25", &c).ok());
  ASSERT_TRUE(ApplyOverride("reward.verifiers.1.options.tag=answer", &c).ok());
  ASSERT_TRUE(ApplyOverride("model={arch: qwen3, preset: small}", &c).ok());
  ASSERT_TRUE(ApplyOverride("grpo.dynamic_sampling=true", &c).ok());
  EXPECT_EQ(c.grpo().group_size(), 16);
  EXPECT_FLOAT_EQ(c.optimizer().lr(), 3e-5f);
  ASSERT_EQ(c.rollout().stop_size(), 2);
  EXPECT_EQ(c.rollout().stop(1), "User:");
  ASSERT_EQ(c.reward().verifiers_size(), 2);
  EXPECT_FLOAT_EQ(c.reward().verifiers(1).weight(), 0.25f);
  EXPECT_EQ(c.reward().verifiers(1).options().at("tag"), "answer");
  EXPECT_EQ(c.model().arch(), "qwen3");
  EXPECT_EQ(c.model().preset(), "small");
  EXPECT_EQ(c.model().dtype(), "float32");  // merged, not replaced
  EXPECT_TRUE(c.grpo().dynamic_sampling());
}

TEST(ConfigTest, BadOverrides) {
  proto::RunConfig c = DefaultRunConfig();
  absl::Status s = ApplyOverride("grpo.gruop_size=16", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("did you mean 'grpo.group_size'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("override 'grpo.gruop_size=16'"));

  s = ApplyOverride("grpo.group_size", &c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("expected dotted.key=value"));

  s = ApplyOverride("grpo.group_size=abc", &c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("grpo.group_size: expected an integer"));

  s = ApplyOverride("seed.x=1", &c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has no field 'x'"));

  s = ApplyOverride("reward.verifiers.9.weight=1", &c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("is a list with 1 elements"));
}

TEST(ConfigTest, YamlRoundTripIsExact) {
  proto::RunConfig c = DefaultRunConfig();
  ASSERT_TRUE(ApplyOverride("optimizer.lr=3.3e-5", &c).ok());
  ASSERT_TRUE(ApplyOverride("rollout.stop=[\"a\\\"b\", \"\\n\", \"x: y\"]", &c).ok());
  ASSERT_TRUE(ApplyOverride("reward.verifiers.0.options={k: \"v #1\"}", &c).ok());
  std::string yaml = ToYaml(c);
  EXPECT_THAT(yaml, HasSubstr("group_size: 8"));
  proto::RunConfig back;
  ASSERT_TRUE(MergeConfigText(yaml, "resolved.yaml", &back).ok()) << yaml;
  EXPECT_EQ(back.SerializeAsString(), c.SerializeAsString()) << yaml;
}

TEST(ConfigTest, ValidationNamesTheKey) {
  auto c = LoadRunConfig("", {"grpo.prompts_per_step=30", "grpo.mini_batches=4"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpo.mini_batches"));

  c = LoadRunConfig("", {"grpo.loss_agg_mode=mean"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpo.loss_agg_mode: 'mean' is not one of"));

  c = LoadRunConfig("", {"grpo.group_size=0"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpo.group_size: must be positive"));

  c = LoadRunConfig("", {});
  ASSERT_TRUE(c.ok()) << c.status();
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto c = LoadRunConfig("/nonexistent/run.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/nonexistent/run.yaml"));
}

TEST(ConfigTest, ExampleConfigsLoad) {
  for (const char* path : {"examples/grpo_gsm8k.yaml", "examples/demo.yaml"}) {
    auto c = LoadRunConfig(path, {});
    EXPECT_TRUE(c.ok()) << path << ": " << c.status();
  }
}

TEST(ConfigTest, EditDistance) {
  EXPECT_EQ(EditDistance("group_size", "group_size"), 0);
  EXPECT_EQ(EditDistance("gruop_size", "group_size"), 2);
  EXPECT_EQ(EditDistance("", "abc"), 3);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
}

}  // namespace
}  // namespace rlvr
