// Tests `rlvr inspect` (cli/cmd_inspect.cc, compiled into this test) on the safetensors fixtures.
#include <string>

#include "cli/commands.h"
#include "core/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr::cli {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out, err;
};

Result RunInspect(const Args& args) {
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  int code = InspectMain(args);
  return {code, ::testing::internal::GetCapturedStdout(), ::testing::internal::GetCapturedStderr()};
}

TEST(InspectTest, ShardedDirectoryWithConfig) {
  Result r = RunInspect({"inspect", "tests/fixtures/safetensors/sharded"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3 tensors in 2 files"));
  EXPECT_THAT(r.out, HasSubstr("model.embed_tokens.weight  F32      [4, 3]"));
  EXPECT_THAT(r.out, HasSubstr("model.layers.0.mlp.weight  BF16     [3, 3]"));
  EXPECT_THAT(r.out, HasSubstr("total: 3 tensors, 33 elements, 114 bytes"));
  EXPECT_THAT(r.out, HasSubstr("\"model_type\": \"qwen2\""));
}

TEST(InspectTest, JsonOutput) {
  Result r = RunInspect({"inspect", "--json", "tests/fixtures/safetensors/all_dtypes.safetensors"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tensors"].size(), 17u);
  EXPECT_EQ(j["metadata"]["format"], "pt");
  EXPECT_FALSE(j.contains("config"));
}

TEST(InspectTest, MalformedFileExitsOneWithReason) {
  std::string dir = std::string(::testing::TempDir());
  std::string path = dir + "/rlvr_inspect_bad.safetensors";
  ASSERT_TRUE(WriteFileAtomically(path, std::string("\x10\0\0\0\0\0\0\0{\"a\": 1}", 16)).ok());
  Result r = RunInspect({"inspect", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("rlvr_inspect_bad.safetensors: header length 16 runs past"));
}

TEST(InspectTest, MissingPathIsUsageError) {
  Result r = RunInspect({"inspect"});
  EXPECT_EQ(r.code, 2);
  Result missing = RunInspect({"inspect", "/nonexistent/model"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/model: not found"));
}

}  // namespace
}  // namespace rlvr::cli
