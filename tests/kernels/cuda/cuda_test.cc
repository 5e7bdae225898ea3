// CUDA kernels against the CPU ones; skips with a message where there is no backend or no GPU.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"
#include "kernels/elementwise.h"
#include "kernels/tensor.h"

namespace rlvr::kernels {
namespace {

bool HaveGpu() {
  if (!cuda::BuiltWithCuda()) return false;
  auto n = cuda::DeviceCount();
  return n.ok() && *n > 0;
}

TEST(CudaTest, StubOrDeviceAnswersCleanly) {
  if (!cuda::BuiltWithCuda()) {
    EXPECT_EQ(cuda::Malloc(16).status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_EQ(cuda::DeviceCount().status().code(), absl::StatusCode::kUnimplemented);
    return;
  }
  EXPECT_TRUE(cuda::DeviceCount().ok());
}

TEST(CudaTest, SwigluMatchesCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA backend or no GPU on this machine";
  const int64_t n = 100003;
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0, 2);
  std::vector<float> g(n), u(n), ref(n), got(n, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    g[i] = d(rng);
    u[i] = d(rng);
  }
  SwigluForward<float>(g.data(), u.data(), n, ref.data());
  auto dg = Tensor::Empty({n}, DType::kF32, Device::kCuda);
  auto du = Tensor::Empty({n}, DType::kF32, Device::kCuda);
  auto dout = Tensor::Empty({n}, DType::kF32, Device::kCuda);
  ASSERT_TRUE(dg.ok() && du.ok() && dout.ok()) << dg.status();
  ASSERT_TRUE(cuda::CopyToDevice(dg->raw_data(), g.data(), n * 4).ok());
  ASSERT_TRUE(cuda::CopyToDevice(du->raw_data(), u.data(), n * 4).ok());
  // Poison the output so an unwritten element fails.
  std::vector<float> poison(n, std::nanf(""));
  ASSERT_TRUE(cuda::CopyToDevice(dout->raw_data(), poison.data(), n * 4).ok());
  ASSERT_TRUE(cuda::SwigluForwardF32(dg->data<float>(), du->data<float>(), n,
                                     dout->data<float>())
                  .ok());
  ASSERT_TRUE(cuda::CopyToHost(got.data(), dout->raw_data(), n * 4).ok());
  double max_err = 0, max_ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << "element " << i << " not written";
    max_err = std::max(max_err, static_cast<double>(std::abs(got[i] - ref[i])));
    max_ref = std::max(max_ref, static_cast<double>(std::abs(ref[i])));
  }
  EXPECT_GT(max_ref, 0.0);
  EXPECT_LT(max_err / max_ref, 1e-5);
}

}  // namespace
}  // namespace rlvr::kernels
