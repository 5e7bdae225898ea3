#include "kernels/tensor.h"

#include <cstdint>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels {
namespace {

TEST(TensorTest, EmptyIsAlignedAndOwning) {
  auto t = Tensor::Empty({3, 5}, DType::kF32);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->ndim(), 2);
  EXPECT_EQ(t->numel(), 15);
  EXPECT_EQ(t->nbytes(), 60u);
  EXPECT_EQ(t->dim(-1), 5);
  EXPECT_TRUE(t->owns());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->raw_data()) % kAlignment, 0u);
  EXPECT_EQ(t->DebugString(), "[3, 5] f32");
}

TEST(TensorTest, ZerosAndCopiesShareTheBuffer) {
  auto t = Tensor::Zeros({4}, DType::kF64);
  ASSERT_TRUE(t.ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t->data<double>()[i], 0.0);
  Tensor copy = *t;
  copy.data<double>()[2] = 7.0;
  EXPECT_EQ(t->data<double>()[2], 7.0);
  auto clone = t->Clone();
  ASSERT_TRUE(clone.ok());
  clone->data<double>()[2] = 1.0;
  EXPECT_EQ(t->data<double>()[2], 7.0);
}

TEST(TensorTest, ViewDoesNotOwnAndReshapeChecksCount) {
  int32_t buf[6] = {0, 1, 2, 3, 4, 5};
  Tensor v = Tensor::View(buf, {2, 3}, DType::kI32);
  EXPECT_FALSE(v.owns());
  EXPECT_EQ(v.data<int32_t>()[4], 4);
  auto r = v.Reshape({3, 2});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->dim(0), 3);
  auto bad = v.Reshape({4, 2});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("[4, 2]"), std::string_view::npos) << bad.status();
}

TEST(TensorTest, CheckNamesTheTensorAndBothShapes) {
  float buf[6];
  Tensor v = Tensor::View(buf, {2, 3}, DType::kF32);
  EXPECT_TRUE(v.Check("w", {2, -1}, DType::kF32).ok());
  absl::Status s = v.Check("model.norm.weight", {3, 2}, DType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "model.norm.weight: shape [2, 3] f32, expected [3, 2] f32");
  EXPECT_FALSE(v.Check("w", {2, 3}, DType::kBF16).ok());
}

TEST(TensorTest, BadShapesAreErrors) {
  EXPECT_EQ(Tensor::Empty({1, 2, 3, 4, 5, 6}, DType::kF32).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::Empty({2, -1}, DType::kF32).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TensorTest, CudaTensorWithoutCudaIsUnimplemented) {
  if (cuda::BuiltWithCuda()) GTEST_SKIP() << "this build has the CUDA backend";
  auto t = Tensor::Empty({2}, DType::kF32, Device::kCuda);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(t.status().message().find("built without CUDA"), std::string_view::npos);
}

}  // namespace
}  // namespace rlvr::kernels
