// Internal to the attention / MoE kernels of the CUDA backend (host code only, no CUDA
// headers): argument validation shared by the .cu files, and the workspace sizes, which the
// no-CUDA stub computes the same way.
#ifndef RLVR_KERNELS_CUDA_ATTN_MOE_ARGS_H_
#define RLVR_KERNELS_CUDA_ATTN_MOE_ARGS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rlvr::kernels::cuda::internal {

// Keys per split of the decode kernel are a multiple of this (one tile).
constexpr int64_t kDecodeTile = 32;
// Decode aims at about this many blocks in flight (two waves on an H100's 132 SMs).
constexpr int64_t kDecodeTargetBlocks = 264;
// Largest grid.y / grid.z.
constexpr int64_t kMaxGridYZ = 65535;

inline size_t AlignUp256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Number of splits and keys per split for a decode over at most max_ctx positions.
struct DecodeSplits {
  int64_t splits = 1;
  int64_t split_len = kDecodeTile;
};
inline DecodeSplits ChooseDecodeSplits(int64_t rows, int64_t max_ctx) {
  DecodeSplits s;
  const int64_t tiles = std::max<int64_t>(1, (max_ctx + kDecodeTile - 1) / kDecodeTile);
  // Enough splits to fill the GPU, but at least two tiles (64 keys) per split.
  const int64_t wanted = (kDecodeTargetBlocks + std::max<int64_t>(rows, 1) - 1) /
                         std::max<int64_t>(rows, 1);
  const int64_t splits = std::clamp<int64_t>(wanted, 1, std::max<int64_t>(1, tiles / 2));
  const int64_t tiles_per_split = (tiles + splits - 1) / splits;
  s.split_len = tiles_per_split * kDecodeTile;
  s.splits = (tiles + tiles_per_split - 1) / tiles_per_split;
  return s;
}

inline size_t DecodeWorkspaceBytes(int64_t B, int64_t Tn, int64_t H, int64_t D,
                                   int64_t max_blocks, int64_t block_size) {
  if (B <= 0 || Tn <= 0 || H <= 0 || D <= 0 || max_blocks <= 0 || block_size <= 0) return 0;
  const DecodeSplits s = ChooseDecodeSplits(B * Tn * H, max_blocks * block_size);
  const size_t parts = static_cast<size_t>(B * Tn * H * s.splits);
  // Partial weighted values [parts, D], then (max, sum) pairs [parts, 2], all fp32.
  return AlignUp256(parts * static_cast<size_t>(D) * 4) + AlignUp256(parts * 2 * 4);
}

inline size_t AttentionBackwardBytes(int64_t B, int64_t Tn, int64_t H) {
  if (B <= 0 || Tn <= 0 || H <= 0) return 0;
  return AlignUp256(static_cast<size_t>(B * Tn * H) * 4);  // D_i [B, H, T] fp32
}

// "<fn>: <what>" as InvalidArgument.
template <typename... Parts>
absl::Status Bad(const char* fn, const Parts&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(fn, ": ", parts...));
}

// Sizes and heads of an attention call; D must be 16, 32, 64 or 128.
inline absl::Status CheckAttentionShape(const char* fn, int64_t B, int64_t Tn, int64_t H,
                                        int64_t Hkv, int64_t D) {
  if (B < 0 || Tn < 0 || H < 0 || Hkv < 0) {
    return Bad(fn, "negative size: B=", B, " T=", Tn, " H=", H, " Hkv=", Hkv);
  }
  if (Hkv == 0 && H > 0) return Bad(fn, "Hkv is 0 with H=", H);
  if (Hkv > 0 && H % Hkv != 0) {
    return Bad(fn, "H=", H, " is not a multiple of Hkv=", Hkv);
  }
  if (D != 16 && D != 32 && D != 64 && D != 128) {
    return Bad(fn, "head dim D=", D, " unsupported (16, 32, 64 or 128)");
  }
  if (B > kMaxGridYZ || H > kMaxGridYZ) return Bad(fn, "B=", B, " or H=", H, " above 65535");
  if (Tn > (int64_t{1} << 30)) return Bad(fn, "T=", Tn, " too large");
  return absl::OkStatus();
}

}  // namespace rlvr::kernels::cuda::internal

#endif  // RLVR_KERNELS_CUDA_ATTN_MOE_ARGS_H_
