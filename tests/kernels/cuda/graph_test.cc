// kernels/cuda/graph.h: capture, replay and the failure paths of CUDA graphs, and the stream /
// async-copy helpers of kernels/cuda/cuda.h they need. The argument checks run without a GPU
// (Unimplemented in a build without CUDA).
#include "kernels/cuda/graph.h"

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/model_glue.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;

// A created stream, destroyed with the test.
struct OwnedStream {
  Stream s = nullptr;
  ~OwnedStream() {
    if (s != nullptr) {
      EXPECT_TRUE(Synchronize(s).ok());
      StreamDestroy(s);
    }
  }
};

TEST(CudaGraphArgs, NullStreamAndGraphAreRejected) {
  const absl::StatusCode want =
      BuiltWithCuda() ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kUnimplemented;
  absl::Status st = BeginCapture(nullptr);
  EXPECT_EQ(st.code(), want) << st;
  if (BuiltWithCuda()) {
    EXPECT_NE(st.message().find("legacy default stream"), std::string::npos) << st;
  }
  EXPECT_EQ(EndCaptureAndInstantiate(nullptr).status().code(), want);
  EXPECT_EQ(LaunchGraph(nullptr, nullptr).code(), want);
  EXPECT_EQ(CaptureGraph(nullptr, [] { return absl::OkStatus(); }).status().code(), want);
  DestroyGraph(nullptr);  // a no-op in both builds
  if (!BuiltWithCuda()) {
    EXPECT_EQ(StreamCreate().status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_EQ(CopyToDeviceAsync(nullptr, nullptr, 4, nullptr).code(),
              absl::StatusCode::kUnimplemented);
  }
}

// x += bf16 y captured once and replayed: each replay reads the current contents of y (changed
// by an async copy between replays) and accumulates into x; all values are small integers, so
// the sums are exact.
TEST(CudaGraph, ReplayReadsCurrentInputs) {
  RLVR_SKIP_WITHOUT_GPU();
  OwnedStream stream;
  auto made = StreamCreate();
  ASSERT_TRUE(made.ok()) << made.status();
  stream.s = *made;
  const int64_t n = 1000;
  std::vector<float> x0(n);
  std::vector<uint16_t> y1(n), y2(n);
  for (int64_t i = 0; i < n; ++i) {
    x0[i] = static_cast<float>(i % 17);
    y1[i] = F32ToBf16(static_cast<float>(i % 5));
    y2[i] = F32ToBf16(static_cast<float>(100 + i % 3));
  }
  DeviceBuffer<float> x(x0);
  DeviceBuffer<uint16_t> y(y1);
  // The buffers were filled by blocking copies on the legacy stream, which a non-blocking
  // stream is not ordered after.
  ASSERT_TRUE(Synchronize().ok());
  // Warm-up run (loads the kernel's module), then the capture, which must not run it.
  ASSERT_TRUE(AddBf16ToF32(y.get(), n, x.get(), stream.s).ok());
  ASSERT_TRUE(Synchronize(stream.s).ok());
  auto graph = CaptureGraph(stream.s, [&] { return AddBf16ToF32(y.get(), n, x.get(), stream.s); });
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_TRUE(Synchronize(stream.s).ok());
  std::vector<float> got = x.Download();
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(got[i], x0[i] + (i % 5)) << "capture ran the work, element " << i;
  }
  ASSERT_TRUE(LaunchGraph(*graph, stream.s).ok());
  ASSERT_TRUE(CopyToDeviceAsync(y.get(), y2.data(), n * sizeof(uint16_t), stream.s).ok());
  ASSERT_TRUE(LaunchGraph(*graph, stream.s).ok());
  ASSERT_TRUE(Synchronize(stream.s).ok());
  std::vector<float> back(n, -1.f);
  ASSERT_TRUE(CopyToHostAsync(back.data(), x.get(), n * sizeof(float), stream.s).ok());
  ASSERT_TRUE(Synchronize(stream.s).ok());
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(back[i], x0[i] + 2 * (i % 5) + 100 + i % 3) << "element " << i;
  }
  DestroyGraph(*graph);
}

// A failing body: its error comes back, the stream has left capture mode and runs eagerly.
TEST(CudaGraph, FailedCaptureLeavesTheStreamUsable) {
  RLVR_SKIP_WITHOUT_GPU();
  OwnedStream stream;
  auto made = StreamCreate();
  ASSERT_TRUE(made.ok()) << made.status();
  stream.s = *made;
  DeviceBuffer<float> x(std::vector<float>{1.f, 2.f});
  DeviceBuffer<uint16_t> y(std::vector<uint16_t>{F32ToBf16(3.f), F32ToBf16(4.f)});
  ASSERT_TRUE(Synchronize().ok());  // the uploads ran on the legacy stream
  auto graph = CaptureGraph(stream.s, [&]() -> absl::Status {
    EXPECT_TRUE(AddBf16ToF32(y.get(), 2, x.get(), stream.s).ok());
    return absl::InvalidArgumentError("body failed");
  });
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(graph.status().message().find("body failed"), std::string::npos) << graph.status();
  // A bad argument inside the body (rejected on the host) fails the same way.
  graph = CaptureGraph(stream.s, [&] { return AddBf16ToF32(y.get(), -1, x.get(), stream.s); });
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument) << graph.status();
  ASSERT_TRUE(AddBf16ToF32(y.get(), 2, x.get(), stream.s).ok());
  ASSERT_TRUE(Synchronize(stream.s).ok());
  EXPECT_EQ(x.Download(), (std::vector<float>{4.f, 6.f}));  // one eager add, none captured
}

}  // namespace
}  // namespace rlvr::kernels::cuda
