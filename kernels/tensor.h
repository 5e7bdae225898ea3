// Tensor: a typed, shaped view of one contiguous buffer on one device.
//
// Dimension letters used in every shape comment of kernels/ and policy/ (defined here once):
//   B  batch (sequences)            T  time (tokens per sequence)
//   N  rows = tokens in a flattened batch (usually B*T)
//   C  channels = hidden size       I  intermediate size of an MLP / expert
//   H  query heads                  Hkv key/value heads (GQA: H % Hkv == 0)
//   D  head dimension               E  routed experts
//   K  experts chosen per token     V  vocabulary (rows of the embedding / LM head)
// A shape comment reads `// [N, C] f32`: row-major, last index fastest.
//
// A Tensor either owns its buffer (allocated by Empty/Zeros, 64-byte aligned on the CPU, freed
// when the last copy goes away: copies share the buffer, they never deep-copy) or is a
// non-owning view of memory someone else keeps alive (View). It is always contiguous; there are
// no strides. Thread safety: like a raw pointer; concurrent reads are fine, concurrent writes to
// the same elements are the caller's problem.
//
// The kernels themselves take raw pointers (templated on the element type, float and double on
// the CPU); Tensor carries buffers between owners and checks shapes at API edges.
#ifndef RLVR_KERNELS_TENSOR_H_
#define RLVR_KERNELS_TENSOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/status.h"

namespace rlvr::kernels {

enum class DType { kF32, kBF16, kF64, kI32, kI64, kU8 };
enum class Device { kCpu, kCuda };

// Bytes per element of `dtype`.
size_t DTypeSize(DType dtype);
// "f32", "bf16", "f64", "i32", "i64", "u8" (the safetensors names are the caller's business).
const char* DTypeName(DType dtype);
const char* DeviceName(Device device);

// The DType of a C++ element type; bf16 has no C++ type here and is handled as uint16_t storage.
template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() { return DType::kF32; }
template <>
constexpr DType DTypeOf<double>() { return DType::kF64; }
template <>
constexpr DType DTypeOf<int32_t>() { return DType::kI32; }
template <>
constexpr DType DTypeOf<int64_t>() { return DType::kI64; }
template <>
constexpr DType DTypeOf<uint8_t>() { return DType::kU8; }
template <>
constexpr DType DTypeOf<uint16_t>() { return DType::kBF16; }

inline constexpr int kMaxDims = 5;
// Alignment of every owning CPU allocation, in bytes (one cache line, one AVX-512 vector).
inline constexpr size_t kAlignment = 64;

class Tensor {
 public:
  // An empty tensor: no buffer, ndim() == 0, numel() == 0.
  Tensor() = default;

  // Allocates an owning, uninitialized tensor. InvalidArgument for more than kMaxDims dims or a
  // negative dim; ResourceExhausted if the allocation fails; Unimplemented for kCuda in a build
  // without CUDA.
  static absl::StatusOr<Tensor> Empty(std::span<const int64_t> shape, DType dtype,
                                      Device device = Device::kCpu);
  static absl::StatusOr<Tensor> Empty(std::initializer_list<int64_t> shape, DType dtype,
                                      Device device = Device::kCpu) {
    return Empty(std::span<const int64_t>(shape.begin(), shape.size()), dtype, device);
  }
  // Like Empty, with every byte zero (for CUDA too).
  static absl::StatusOr<Tensor> Zeros(std::span<const int64_t> shape, DType dtype,
                                      Device device = Device::kCpu);
  static absl::StatusOr<Tensor> Zeros(std::initializer_list<int64_t> shape, DType dtype,
                                      Device device = Device::kCpu) {
    return Zeros(std::span<const int64_t>(shape.begin(), shape.size()), dtype, device);
  }
  // A non-owning view of `data`, which must hold numel * DTypeSize(dtype) bytes and outlive the
  // view and all its copies. RLVR_CHECKs the rank and dims (a bug, not bad input).
  static Tensor View(void* data, std::span<const int64_t> shape, DType dtype,
                     Device device = Device::kCpu);
  static Tensor View(void* data, std::initializer_list<int64_t> shape, DType dtype,
                     Device device = Device::kCpu) {
    return View(data, std::span<const int64_t>(shape.begin(), shape.size()), dtype, device);
  }

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int ndim() const { return ndim_; }
  // Dimension `i`; negative counts from the end (dim(-1) is the last). RLVR_CHECKs the range.
  int64_t dim(int i) const;
  std::span<const int64_t> shape() const { return {shape_.data(), static_cast<size_t>(ndim_)}; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }
  bool empty() const { return data_ == nullptr; }
  // True if this tensor (or a copy it was made from) allocated its buffer.
  bool owns() const { return owner_ != nullptr; }

  void* raw_data() const { return data_; }
  // Typed pointer; RLVR_CHECKs that T matches dtype().
  template <typename T>
  T* data() const {
    RLVR_CHECK(DTypeOf<T>() == dtype_, "Tensor::data<", DTypeName(DTypeOf<T>()), ">() on a ",
               DTypeName(dtype_), " tensor");
    return static_cast<T*>(data_);
  }

  // A view of the same buffer with another shape of the same numel (shares ownership).
  // InvalidArgument naming both shapes if the element counts differ.
  absl::StatusOr<Tensor> Reshape(std::span<const int64_t> shape) const;
  absl::StatusOr<Tensor> Reshape(std::initializer_list<int64_t> shape) const {
    return Reshape(std::span<const int64_t>(shape.begin(), shape.size()));
  }
  // Deep copy into a fresh owning CPU tensor (CPU source only; Unimplemented otherwise).
  absl::StatusOr<Tensor> Clone() const;

  // "[2, 3] f32".
  std::string DebugString() const;
  // OK if dtype and shape are exactly `dtype` and `shape` (-1 in `shape` matches any size);
  // otherwise InvalidArgument "<name>: shape [..] f32, expected [..] f64".
  absl::Status Check(std::string_view name, std::initializer_list<int64_t> shape,
                     DType dtype) const;

 private:
  std::shared_ptr<void> owner_;  // null for views
  void* data_ = nullptr;
  std::array<int64_t, kMaxDims> shape_{};
  int ndim_ = 0;
  int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCpu;
};

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_TENSOR_H_
