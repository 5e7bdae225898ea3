// Shared by the CUDA kernel tests: skip without a GPU, device buffers, poisoned outputs.
#ifndef RLVR_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_
#define RLVR_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda::testing {

inline bool HaveGpu() {
  if (!BuiltWithCuda()) return false;
  auto n = DeviceCount();
  return n.ok() && *n > 0;
}

// First statement of every test that needs a device.
#define RLVR_SKIP_WITHOUT_GPU()                                                          \
  do {                                                                                   \
    if (!::rlvr::kernels::cuda::testing::HaveGpu())                                      \
      GTEST_SKIP() << (::rlvr::kernels::cuda::BuiltWithCuda()                            \
                           ? "CUDA backend built, but no GPU on this machine"            \
                           : "built without the CUDA backend");                          \
  } while (0)

// A device copy of a host vector (or uninitialized device memory), freed on destruction.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    auto p = Malloc(n * sizeof(T) + 1);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) ptr_ = static_cast<T*>(*p);
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { Upload(host); }
  ~DeviceBuffer() { Free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& host) {
    EXPECT_EQ(host.size(), n_);
    EXPECT_TRUE(CopyToDevice(ptr_, host.data(), n_ * sizeof(T)).ok());
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    EXPECT_TRUE(Synchronize().ok());
    EXPECT_TRUE(CopyToHost(host.data(), ptr_, n_ * sizeof(T)).ok());
    return host;
  }
  // Fills with NaN (float) or 0xFFFF (bf16 NaN bits) so an element the kernel never writes fails.
  void Poison() {
    std::vector<unsigned char> bytes(n_ * sizeof(T), 0xFF);
    EXPECT_TRUE(CopyToDevice(ptr_, bytes.data(), bytes.size()).ok());
  }

 private:
  size_t n_ = 0;
  T* ptr_ = nullptr;
};

// max |got - ref| / max |ref| over all elements; a NaN in `got` gives +inf.
template <typename A, typename B>
double RelativeMaxError(const std::vector<A>& got, const std::vector<B>& ref) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    if (std::isnan(g)) return INFINITY;
    err = std::max(err, std::abs(g - r));
    scale = std::max(scale, std::abs(r));
  }
  return scale > 0 ? err / scale : err;
}

}  // namespace rlvr::kernels::cuda::testing

#endif  // RLVR_TESTS_KERNELS_CUDA_CUDA_TEST_UTIL_H_
