// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected), as used by TFRecord framing.
//
// Uses the SSE4.2 crc32 instruction when the build targets it and a slicing-by-8 table
// otherwise; both give identical results (tested against the RFC 3720 vectors). Pure functions,
// thread-safe.
#ifndef RLVR_CORE_CRC32C_H_
#define RLVR_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace rlvr::crc32c {

// The CRC of `data[0, n)` continuing from `crc` (the CRC of the preceding bytes; 0 to start).
uint32_t Extend(uint32_t crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }
inline uint32_t Value(absl::string_view s) { return Extend(0, s.data(), s.size()); }

// The portable table implementation (exposed so tests can compare it with the hardware path).
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n);

// TFRecord stores CRCs "masked" so that a CRC of data that itself contains CRCs is not trivially
// related to them: rotate right by 15 bits and add a constant.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace rlvr::crc32c

#endif  // RLVR_CORE_CRC32C_H_
