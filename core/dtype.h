// Element types of tensors stored in files (safetensors) and conversions between the narrow
// floating-point formats and float32.
//
// Names follow the safetensors specification ("F32", "BF16", "F8_E4M3", ...). All multi-byte
// values are little-endian in files; rlvr only builds on little-endian hosts.
//
// Conversions (all pure functions, thread-safe):
//   - float32 -> bf16 / f16 / f8: round to nearest, ties to even; NaN stays NaN (quiet).
//   - f16: IEEE binary16 (subnormals, +-inf, NaN).
//   - bf16: the top 16 bits of a float32.
//   - F8_E4M3 is the "fn" variant used by PyTorch and safetensors (float8_e4m3fn): bias 7, no
//     infinities, NaN is S.1111.111, largest finite value 448. A float32 whose magnitude rounds
//     above 448 (or is infinite) becomes NaN, as in PyTorch and ml_dtypes; pass
//     `saturate = true` to clamp to +-448 instead (what FP8 training recipes usually want).
//   - F8_E5M2: IEEE-like (bias 15, with infinities and NaN); it is binary16 with the low 8
//     mantissa bits dropped. Overflow gives +-inf (or +-57344 with `saturate`).
#ifndef RLVR_CORE_DTYPE_H_
#define RLVR_CORE_DTYPE_H_

#include <bit>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rlvr {

static_assert(std::endian::native == std::endian::little, "rlvr assumes a little-endian host");

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};
inline constexpr int kNumDTypes = 15;

// The safetensors name of `dtype` ("F32", "BOOL", "F8_E4M3", ...).
absl::string_view DTypeName(DType dtype);
// Parses a safetensors dtype name; InvalidArgument naming the value and the known names if it
// is not one rlvr supports.
absl::StatusOr<DType> ParseDType(absl::string_view name);
// Bytes per element.
size_t DTypeSize(DType dtype);
bool IsFloatingPoint(DType dtype);

// Scalar conversions. The uint16_t / uint8_t values are the raw bit patterns.
float Bf16ToF32(uint16_t bits);
uint16_t F32ToBf16(float value);
float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);
float F8E4M3ToF32(uint8_t bits);
uint8_t F32ToF8E4M3(float value, bool saturate = false);
float F8E5M2ToF32(uint8_t bits);
uint8_t F32ToF8E5M2(float value, bool saturate = false);

// Converts `n` elements of type `dtype` at `src` (little-endian, any alignment) to float32.
// Integer and bool types convert by value (large 64-bit integers round). `dst` must hold `n`
// floats.
void ConvertToF32(DType dtype, const void* src, float* dst, size_t n);
// Converts `n` float32 values to `dtype` (floating-point dtypes only: F64, F32, F16, BF16,
// F8_E4M3, F8_E5M2); InvalidArgument for other dtypes. `dst` must hold n * DTypeSize(dtype)
// bytes (any alignment).
absl::Status ConvertFromF32(const float* src, DType dtype, void* dst, size_t n);

}  // namespace rlvr

#endif  // RLVR_CORE_DTYPE_H_
