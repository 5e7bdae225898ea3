#include "core/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rlvr {
namespace {

struct DTypeInfo {
  absl::string_view name;
  size_t size;
  bool floating;
};

constexpr DTypeInfo kInfo[kNumDTypes] = {
    {"BOOL", 1, false},   {"U8", 1, false},  {"I8", 1, false},  {"F8_E5M2", 1, true},
    {"F8_E4M3", 1, true}, {"I16", 2, false}, {"U16", 2, false}, {"F16", 2, true},
    {"BF16", 2, true},    {"I32", 4, false}, {"U32", 4, false}, {"F32", 4, true},
    {"F64", 8, true},     {"I64", 8, false}, {"U64", 8, false},
};

// Describes a small binary floating-point format for the generic rounding routine below.
struct SmallFloat {
  int mantissa_bits;
  int bias;
  uint32_t max_finite;  // encoding (without sign) of the largest finite value
  uint32_t overflow;    // encoding (without sign) produced on overflow without saturation
  uint32_t nan;         // encoding (without sign) of the canonical NaN
};

constexpr SmallFloat kF16Format = {10, 15, 0x7BFF, 0x7C00, 0x7E00};
constexpr SmallFloat kE4M3Format = {3, 7, 0x7E, 0x7F, 0x7F};
constexpr SmallFloat kE5M2Format = {2, 15, 0x7B, 0x7C, 0x7E};

// Rounds a float32 to the format `f` (round to nearest, ties to even) and returns its encoding,
// sign bit at position (1 + exponent bits + mantissa bits) - 1, i.e. the format's top bit.
uint32_t RoundToSmallFloat(float value, const SmallFloat& f, int total_bits, bool saturate) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  uint32_t sign = (bits >> 31) << (total_bits - 1);
  if (std::isnan(value)) return sign | f.nan;
  float a = std::fabs(value);
  const int min_normal_exp = 1 - f.bias;
  uint32_t result;
  if (std::isinf(a)) {
    result = saturate ? f.max_finite : f.overflow;
  } else if (a < std::ldexp(1.0f, min_normal_exp)) {
    // Subnormal (or zero) in the target: count multiples of the smallest subnormal. Dividing by
    // a power of two is exact, and nearbyint rounds ties to even in the default FP mode. A result
    // of 2^mantissa_bits is exactly the smallest normal's encoding, so no special case.
    float q = std::nearbyint(std::ldexp(a, f.mantissa_bits - min_normal_exp));
    result = static_cast<uint32_t>(q);
  } else {
    // Normal: round the 23-bit mantissa to `mantissa_bits` on the raw bits (a carry out of the
    // mantissa correctly bumps the exponent), then rebias the exponent.
    uint32_t abs_bits = bits & 0x7FFFFFFFu;
    int shift = 23 - f.mantissa_bits;
    uint32_t rounded = (abs_bits + ((1u << (shift - 1)) - 1) + ((abs_bits >> shift) & 1)) >> shift;
    int64_t rebiased =
        static_cast<int64_t>(rounded) - (static_cast<int64_t>(127 - f.bias) << f.mantissa_bits);
    if (rebiased > static_cast<int64_t>(f.max_finite)) {
      result = saturate ? f.max_finite : f.overflow;
    } else {
      result = static_cast<uint32_t>(rebiased);
    }
  }
  return sign | result;
}

template <typename T>
T LoadUnaligned(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void StoreUnaligned(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace

absl::string_view DTypeName(DType dtype) { return kInfo[static_cast<int>(dtype)].name; }
size_t DTypeSize(DType dtype) { return kInfo[static_cast<int>(dtype)].size; }
bool IsFloatingPoint(DType dtype) { return kInfo[static_cast<int>(dtype)].floating; }

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (int i = 0; i < kNumDTypes; ++i) {
    if (kInfo[i].name == name) return static_cast<DType>(i);
  }
  std::vector<absl::string_view> names;
  for (const DTypeInfo& info : kInfo) names.push_back(info.name);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "' (known: ", absl::StrJoin(names, ", "), ")"));
}

float Bf16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t F32ToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  // Keep NaN a NaN: rounding could carry a NaN's payload into the exponent and make it inf.
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x0040);
  uint32_t rounding_bias = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float F16ToF32(uint16_t h) {
  // Rebias on the bits: normal values shift into place, subnormals (exact as small integers
  // times 2^-24) go through one multiply, inf/NaN keep their payload.
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t em = h & 0x7FFF;
  uint32_t bits;
  if (em >= 0x7C00) {
    bits = 0x7F800000u | ((em & 0x3FF) << 13);
  } else if (em >= 0x0400) {
    bits = (em << 13) + ((127u - 15u) << 23);
  } else {
    bits = std::bit_cast<uint32_t>(static_cast<float>(em) * 0x1.0p-24f);
  }
  return std::bit_cast<float>(sign | bits);
}

uint16_t F32ToF16(float value) {
  return static_cast<uint16_t>(RoundToSmallFloat(value, kF16Format, 16, /*saturate=*/false));
}

float F8E4M3ToF32(uint8_t bits) {
  float sign = (bits & 0x80) ? -1.0f : 1.0f;
  if ((bits & 0x7F) == 0x7F) return std::copysign(std::numeric_limits<float>::quiet_NaN(), sign);
  int exponent = (bits >> 3) & 0xF;
  int mantissa = bits & 0x7;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
}

uint8_t F32ToF8E4M3(float value, bool saturate) {
  return static_cast<uint8_t>(RoundToSmallFloat(value, kE4M3Format, 8, saturate));
}

float F8E5M2ToF32(uint8_t bits) { return F16ToF32(static_cast<uint16_t>(bits << 8)); }

uint8_t F32ToF8E5M2(float value, bool saturate) {
  return static_cast<uint8_t>(RoundToSmallFloat(value, kE5M2Format, 8, saturate));
}

void ConvertToF32(DType dtype, const void* src, float* dst, size_t n) {
  if (n == 0) return;  // src and dst may be null for empty tensors
  const uint8_t* p = static_cast<const uint8_t*>(src);
  switch (dtype) {
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) dst[i] = p[i] != 0 ? 1.0f : 0.0f;
      return;
    case DType::kU8:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(p[i]);
      return;
    case DType::kI8:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<int8_t>(p[i]));
      return;
    case DType::kF8E5M2:
      for (size_t i = 0; i < n; ++i) dst[i] = F8E5M2ToF32(p[i]);
      return;
    case DType::kF8E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = F8E4M3ToF32(p[i]);
      return;
    case DType::kI16:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<int16_t>(p + 2 * i));
      return;
    case DType::kU16:
      for (size_t i = 0; i < n; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<uint16_t>(p + 2 * i));
      return;
    case DType::kF16: {
      size_t i = 0;
#if defined(__F16C__)
      // The F16C instruction is exact, like the scalar path.
      for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
      }
#endif
      for (; i < n; ++i) dst[i] = F16ToF32(LoadUnaligned<uint16_t>(p + 2 * i));
      return;
    }
    case DType::kBF16: {
      size_t i = 0;
#if defined(__AVX2__)
      // bf16 is the top half of a float32: widen and shift, 8 at a time.
      for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
      }
#endif
      for (; i < n; ++i) dst[i] = Bf16ToF32(LoadUnaligned<uint16_t>(p + 2 * i));
      return;
    }
    case DType::kI32:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<int32_t>(p + 4 * i));
      return;
    case DType::kU32:
      for (size_t i = 0; i < n; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<uint32_t>(p + 4 * i));
      return;
    case DType::kF32:
      std::memcpy(dst, p, n * sizeof(float));
      return;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<double>(p + 8 * i));
      return;
    case DType::kI64:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(LoadUnaligned<int64_t>(p + 8 * i));
      return;
    case DType::kU64:
      for (size_t i = 0; i < n; ++i)
        dst[i] = static_cast<float>(LoadUnaligned<uint64_t>(p + 8 * i));
      return;
  }
}

absl::Status ConvertFromF32(const float* src, DType dtype, void* dst, size_t n) {
  if (!IsFloatingPoint(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ConvertFromF32: target dtype ", DTypeName(dtype), " is not a floating-point type"));
  }
  if (n == 0) return absl::OkStatus();  // src and dst may be null for empty tensors
  uint8_t* p = static_cast<uint8_t*>(dst);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(p, src, n * sizeof(float));
      break;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) StoreUnaligned<double>(p + 8 * i, src[i]);
      break;
    case DType::kF16: {
      size_t i = 0;
#if defined(__F16C__)
      // Round-to-nearest-even in hardware matches F32ToF16 on every non-NaN input (NaN payloads
      // may differ; both stay NaN).
      for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 2 * i), h);
      }
#endif
      for (; i < n; ++i) StoreUnaligned<uint16_t>(p + 2 * i, F32ToF16(src[i]));
      break;
    }
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) StoreUnaligned<uint16_t>(p + 2 * i, F32ToBf16(src[i]));
      break;
    case DType::kF8E4M3:
      for (size_t i = 0; i < n; ++i) p[i] = F32ToF8E4M3(src[i]);
      break;
    case DType::kF8E5M2:
      for (size_t i = 0; i < n; ++i) p[i] = F32ToF8E5M2(src[i]);
      break;
    default:
      return absl::InternalError(
          absl::StrCat("ConvertFromF32: unhandled dtype ", DTypeName(dtype)));
  }
  return absl::OkStatus();
}

}  // namespace rlvr
