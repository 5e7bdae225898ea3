// The host emulation's own machinery (kernels/cuda/emulation/emu.h), which the
// emulated model tests rely on to catch orchestration bugs: deferred streams,
// device range checks, and the capture rules. Linked with the emulation objects
// only (kernels_cuda_emulation_test).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/graph.h"
#include "kernels/cuda/model_glue.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "gtest/gtest.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;

bool Has(const absl::Status &st, const std::string &what) {
  return st.message().find(what) != absl::string_view::npos;
}

TEST(CudaEmulation, WorkRunsWhenTheHostWaits) {
  auto s = StreamCreate();
  ASSERT_TRUE(s.ok());
  DeviceBuffer<float> x(std::vector<float>{1.f, 2.f});
  DeviceBuffer<uint16_t> y(
      std::vector<uint16_t>{F32ToBf16(3.f), F32ToBf16(4.f)});
  ASSERT_TRUE(AddBf16ToF32(y.get(), 2, x.get(), *s).ok());
  float host[2] = {0, 0};
  // A blocking copy waits for the legacy stream only: the add on *s has not run
  // yet.
  ASSERT_TRUE(CopyToHost(host, x.get(), sizeof(host)).ok());
  EXPECT_EQ(host[0], 1.f)
      << "work on a created stream ran before anyone waited for it";
  ASSERT_TRUE(Synchronize(*s).ok());
  ASSERT_TRUE(CopyToHost(host, x.get(), sizeof(host)).ok());
  EXPECT_EQ(host[0], 4.f);
  EXPECT_EQ(host[1], 6.f);
  StreamDestroy(*s);
  // A destroyed stream is an invalid handle.
  EXPECT_EQ(AddBf16ToF32(y.get(), 2, x.get(), *s).code(),
            absl::StatusCode::kInternal);
}

TEST(CudaEmulation, RangesOutsideAllocationsAreErrors) {
  DeviceBuffer<float> x(10); // 10 floats (+1 byte)
  DeviceBuffer<uint16_t> y(12);
  absl::Status st = ConvertF32ToBf16(x.get(), 12, y.get());
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_TRUE(Has(st, "ConvertF32ToBf16: x")) << st;
  EXPECT_TRUE(Has(st, "past the end")) << st;
  std::vector<float> host(4);
  st = ConvertF32ToBf16(host.data(), 4, y.get());
  EXPECT_TRUE(Has(st, "not inside any live device allocation")) << st;
  EXPECT_TRUE(ConvertF32ToBf16(x.get(), 10, y.get()).ok());
  // Fresh allocations read as NaN.
  DeviceBuffer<float> fresh(3);
  EXPECT_TRUE(std::isnan(fresh.Download()[1]));
}

TEST(CudaEmulation, CaptureRejectsBlockingCallsAndColdGemms) {
  auto s = StreamCreate();
  ASSERT_TRUE(s.ok());
  DeviceBuffer<float> x(std::vector<float>{1.f});
  float host = 0;
  auto graph = CaptureGraph(*s, [&] { return CopyToHost(&host, x.get(), 4); });
  EXPECT_FALSE(graph.ok());
  EXPECT_TRUE(Has(graph.status(), "not permitted when stream is capturing"))
      << graph.status();
  // A GEMM never run eagerly on this stream would allocate its workspace inside
  // the capture.
  DeviceBuffer<uint16_t> a(std::vector<uint16_t>(4, F32ToBf16(1.f)));
  DeviceBuffer<float> c(4);
  auto gemm = [&] {
    return GemmBf16(false, false, 2, 2, 2, 1.f, a.get(), 2, a.get(), 2, 0.f,
                    c.get(), 2, *s);
  };
  graph = CaptureGraph(*s, gemm);
  EXPECT_FALSE(graph.ok());
  EXPECT_TRUE(Has(graph.status(), "cuBLASLt workspace")) << graph.status();
  ASSERT_TRUE(gemm().ok()); // warm-up, then the capture works and replays
  ASSERT_TRUE(Synchronize(*s).ok());
  graph = CaptureGraph(*s, gemm);
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_TRUE(Memset0(c.get(), 16).ok());
  ASSERT_TRUE(Synchronize().ok());
  ASSERT_TRUE(LaunchGraph(*graph, *s).ok());
  ASSERT_TRUE(Synchronize(*s).ok());
  EXPECT_EQ(c.Download(), (std::vector<float>{2.f, 2.f, 2.f, 2.f}));
  DestroyGraph(*graph);
  ReleaseGemmWorkspace(*s);
  StreamDestroy(*s);
}

} // namespace
} // namespace rlvr::kernels::cuda
