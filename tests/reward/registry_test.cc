#include "reward/registry.h"

#include <memory>
#include <stdexcept>
#include <string>

#include "gtest/gtest.h"

namespace rlvr::reward {
namespace {

class ConstVerifier : public Verifier {
 public:
  explicit ConstVerifier(double r) : r_(r) {}
  std::string name() const override { return "const"; }
  absl::StatusOr<VerdictResult> Score(const Sample&) const override {
    VerdictResult v;
    v.reward = r_;
    return v;
  }

 private:
  double r_;
};

TEST(RegistryTest, BuiltinsAreRegistered) {
  VerifierRegistry registry;
  ASSERT_TRUE(RegisterBuiltinVerifiers(&registry).ok());
  EXPECT_EQ(registry.Names(),
            (std::vector<std::string>{"code", "countdown", "format", "math", "overlong"}));
  auto v = registry.Create("format", {});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->name(), "format");
}

TEST(RegistryTest, UnknownNameListsTheKnownOnes) {
  VerifierRegistry registry;
  ASSERT_TRUE(RegisterBuiltinVerifiers(&registry).ok());
  auto v = registry.Create("maths", {});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(v.status().message().find("'maths'"), absl::string_view::npos);
  EXPECT_NE(v.status().message().find("math, overlong"), absl::string_view::npos) << v.status();
}

TEST(RegistryTest, DuplicateAndEmptyNamesAreErrors) {
  VerifierRegistry registry;
  auto factory = [](const VerifierOptions&) -> absl::StatusOr<std::unique_ptr<Verifier>> {
    return std::unique_ptr<Verifier>(new ConstVerifier(1));
  };
  ASSERT_TRUE(registry.Register("c", factory).ok());
  EXPECT_EQ(registry.Register("c", factory).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Register("", factory).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Register("n", nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegistryTest, ThrowingFactoryIsAnErrorNotACrash) {
  VerifierRegistry registry;
  ASSERT_TRUE(
      registry
          .Register("boom",
                    [](const VerifierOptions&) -> absl::StatusOr<std::unique_ptr<Verifier>> {
                      throw std::runtime_error("bad config");
                    })
          .ok());
  auto v = registry.Create("boom", {});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(v.status().message().find("bad config"), absl::string_view::npos);
}

TEST(PluginTest, LoadsTheExamplePlugin) {
  VerifierRegistry registry;
  ASSERT_TRUE(RegisterBuiltinVerifiers(&registry).ok());
  absl::Status s = LoadVerifierPlugin(RLVR_EXAMPLE_PLUGIN_PATH, &registry);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(registry.Contains("keyword"));
  EXPECT_TRUE(registry.Contains("answer_len"));

  auto kw = registry.Create("keyword", {{"keyword", "therefore"}});
  ASSERT_TRUE(kw.ok()) << kw.status();
  Sample sample;
  sample.completion = "x = 2, therefore y = 4";
  auto r = (*kw)->Score(sample);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reward, 1.0);
  sample.completion = "no";
  EXPECT_EQ((*kw)->Score(sample)->reward, 0.0);

  // Reads the record through the plugin's verifier.
  auto field = registry.Create("keyword", {{"field", "answer"}});
  ASSERT_TRUE(field.ok()) << field.status();
  sample.record = std::make_shared<const nlohmann::json>(nlohmann::json{{"answer", "42"}});
  sample.completion = "it is 42";
  EXPECT_EQ((*field)->Score(sample)->reward, 1.0);
  absl::Status missing = (*field)->CheckRecord(nlohmann::json{{"question", "?"}});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("'answer'"), absl::string_view::npos);

  auto len = registry.Create("answer_len", {{"scale", "10"}});
  ASSERT_TRUE(len.ok());
  sample.completion = "<answer>12345</answer>";
  EXPECT_DOUBLE_EQ((*len)->Score(sample)->reward, -0.5);

  // Options errors come back through the plugin.
  auto bad = registry.Create("keyword", {{"keyword", "a"}, {"wat", "1"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("keyword.options.wat"), absl::string_view::npos)
      << bad.status();

  // Loading it twice collides on the names.
  absl::Status again = LoadVerifierPlugin(RLVR_EXAMPLE_PLUGIN_PATH, &registry);
  EXPECT_EQ(again.code(), absl::StatusCode::kInternal);
}

TEST(PluginTest, MissingFileIsNotFoundNamingThePath) {
  VerifierRegistry registry;
  absl::Status s = LoadVerifierPlugin("/nonexistent/libnothing.so", &registry);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("/nonexistent/libnothing.so"), absl::string_view::npos);
}

TEST(PluginTest, LibraryWithoutEntryPointIsRejected) {
  VerifierRegistry registry;
  absl::Status s = LoadVerifierPlugin("libm.so.6", &registry);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("rlvr_plugin_abi_version"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace rlvr::reward
