// A bf16 GEMM for CPUs with AVX512-BF16 (Zen 4, Sapphire Rapids, Cooper Lake): float matrices
// in and out, operands rounded to bfloat16 (round to nearest even) while they are packed,
// products accumulated in float32 by VDPBF16PS. Twice the fp32 FMA rate of the same core.
//
// Internal to kernels/: callers use kernels::Gemm<float> under MatmulPrecision::kBf16
// (kernels/matmul.h), which routes here when the CPU has the instructions.
//
// Layout (BLIS-style): C is computed in 16 x 16 tiles. K is walked in blocks of kKc; for each
// block, op(B) is packed into 16-column panels of bf16 pairs ([k/2][16] x uint32: the two bf16
// of consecutive k of one column share a 32-bit lane, which is what VDPBF16PS multiplies and
// adds), and op(A) into 16-row panels of the same shape. The micro-kernel broadcasts one pair of
// A per row and multiplies it against the 16 column pairs of B. Odd K is padded with zeros.
#ifndef RLVR_KERNELS_CPU_GEMM_BF16_H_
#define RLVR_KERNELS_CPU_GEMM_BF16_H_

#include <cstdint>
#include <memory>
#include <vector>

namespace rlvr::kernels::internal {

// True when this CPU executes AVX512F/BW/VL and AVX512-BF16 (checked once, at run time: the
// library itself may be compiled for a lesser -march).
bool CpuHasAvx512Bf16();

// op(B) [K, N] converted once to the packed bf16 layout GemmBf16 uses, for a B that takes part
// in many products (a weight matrix during generation). The numbers are those GemmBf16 packs
// on the fly, so a product gives the same bits either way.
struct PackedB {
  int64_t K = 0, N = 0;
  std::vector<int64_t> offsets;  // of each (column block, K block), in uint32 units
  std::vector<uint32_t> storage;
  uint32_t* data = nullptr;  // 64-byte aligned, inside storage
  int64_t Offset(int64_t jc, int64_t kc) const;
};
// Precondition: CpuHasAvx512Bf16(), K, N > 0.
std::unique_ptr<PackedB> PackB(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb);

// C[M, N] = alpha * op(A) @ op(B) + beta * C with the operands rounded to bf16; arguments as
// kernels::Gemm (row-major, leading dimensions in elements). beta == 0 ignores C's contents.
// With `packed_b` (made by PackB with the same trans_b, K, N), B and ldb are not read.
// Precondition: CpuHasAvx512Bf16(), M, N, K > 0. Runs on the OpenMP team unless called from
// inside a parallel region.
void GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, const PackedB* packed_b = nullptr);


}  // namespace rlvr::kernels::internal

#endif  // RLVR_KERNELS_CPU_GEMM_BF16_H_
