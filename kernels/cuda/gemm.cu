// Row-major GEMM through cuBLASLt (see kernels/cuda/dense.h for the contract).
//
// cuBLASLt is column-major. A row-major X[r, c] with leading dimension ld is, read column-major,
// X^T[c, r] with the same ld, so the row-major C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T: the first operand is B (transposed iff trans_b), the second is A
// (transposed iff trans_a), m = N, n = M.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/dense_util.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::ArgError;
using internal::CheckPtr;
using internal::CheckSize;

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // what NVIDIA recommends for Hopper

absl::Status LtStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLASLt status ", static_cast<int>(st), " (",
                                          cublasGetStatusName(st), ")"));
}
#define RLVR_RETURN_IF_ERROR_LT(expr, what) RLVR_CUDA_RETURN_IF_ERROR(LtStatus((expr), (what)))

// Process-wide cuBLASLt state: a handle per device, a workspace per (device, stream) (cuBLASLt
// workspaces must not be shared by kernels that may run concurrently), and the heuristic's
// algorithm per problem key. Never freed: handles and workspaces live as long as the process.
struct LtState {
  std::mutex mu;
  std::map<int, cublasLtHandle_t> handles;
  std::map<std::pair<int, void*>, void*> workspaces;
  std::map<std::array<int64_t, 20>, cublasLtMatmulAlgo_t> algos;
};

LtState& State() {
  static LtState* state = new LtState();  // leaked on purpose: no teardown order problems
  return *state;
}

absl::Status GetHandleAndWorkspace(int device, void* stream, cublasLtHandle_t* handle,
                                   void** workspace) {
  LtState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  auto h = s.handles.find(device);
  if (h == s.handles.end()) {
    cublasLtHandle_t created = nullptr;
    RLVR_RETURN_IF_ERROR_LT(cublasLtCreate(&created), "cublasLtCreate");
    h = s.handles.emplace(device, created).first;
  }
  *handle = h->second;
  auto w = s.workspaces.find({device, stream});
  if (w == s.workspaces.end()) {
    void* ptr = nullptr;
    absl::Status st = CudaStatus(cudaMalloc(&ptr, kWorkspaceBytes), "cuBLASLt workspace");
    if (!st.ok()) return st;
    w = s.workspaces.emplace(std::make_pair(device, stream), ptr).first;
  }
  *workspace = w->second;
  return absl::OkStatus();
}

}  // namespace

void ReleaseGemmWorkspace(Stream stream) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  void* ptr = nullptr;
  {
    LtState& s = State();
    std::lock_guard<std::mutex> lock(s.mu);
    auto w = s.workspaces.find({device, stream});
    if (w == s.workspaces.end()) return;
    ptr = w->second;
    s.workspaces.erase(w);
  }
  cudaFree(ptr);
}

namespace {

// Largest power of two (<= 256) dividing the address and, for batched products, the stride.
int64_t AlignmentBytes(const void* p, int64_t stride_bytes) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(stride_bytes) | 256u;
  return static_cast<int64_t>(bits & (~bits + 1));
}

// RAII owners of cuBLASLt descriptors.
struct OpDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~OpDesc() {
    if (d != nullptr) cublasLtMatmulDescDestroy(d);
  }
};
struct LayoutDesc {
  cublasLtMatrixLayout_t d = nullptr;
  ~LayoutDesc() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
  }
};
struct PrefDesc {
  cublasLtMatmulPreference_t d = nullptr;
  ~PrefDesc() {
    if (d != nullptr) cublasLtMatmulPreferenceDestroy(d);
  }
};

absl::Status MakeLayout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                        int64_t batch, int64_t stride, LayoutDesc* out) {
  RLVR_RETURN_IF_ERROR_LT(cublasLtMatrixLayoutCreate(&out->d, type, static_cast<uint64_t>(rows),
                                                     static_cast<uint64_t>(cols), ld),
                          "cublasLtMatrixLayoutCreate");
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatrixLayoutSetAttribute(out->d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                         sizeof(count)),
        "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatrixLayoutSetAttribute(out->d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                         &stride, sizeof(stride)),
        "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
  }
  return absl::OkStatus();
}

// C = beta * C for K == 0 (cuBLASLt does not take k = 0); beta == 0 writes zeros.
template <typename TC>
__global__ void ScaleCKernel(int64_t M, int64_t N, int64_t ldc, int64_t stride_c, int64_t batch,
                             float beta, TC* C) {
  const int64_t total = batch * M * N;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / (M * N), rem = i % (M * N), r = rem / N, c = rem % N;
    TC* p = C + b * stride_c + r * ldc + c;
    internal::Store(p, beta == 0.0f ? 0.0f : beta * internal::Load(p));
  }
}

struct GemmTypes {
  cudaDataType_t ab;
  cudaDataType_t c;
  cublasComputeType_t compute;
  int64_t ab_size, c_size;  // bytes per element
};

absl::Status Validate(const char* fn, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb,
                      int64_t stride_b, const void* C, int64_t ldc, int64_t stride_c,
                      int64_t batch) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "M", M));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "K", K));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "batch", batch));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "stride_a", stride_a));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "stride_b", stride_b));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "stride_c", stride_c));
  if (batch > INT32_MAX) return ArgError(fn, absl::StrCat("batch = ", batch, " exceeds 2^31-1"));
  const int64_t min_lda = trans_a ? M : K, min_ldb = trans_b ? K : N;
  if (lda < std::max<int64_t>(1, min_lda)) {
    return ArgError(fn, absl::StrCat("lda = ", lda, " < ", std::max<int64_t>(1, min_lda),
                                     trans_a ? " (M, A transposed)" : " (K)"));
  }
  if (ldb < std::max<int64_t>(1, min_ldb)) {
    return ArgError(fn, absl::StrCat("ldb = ", ldb, " < ", std::max<int64_t>(1, min_ldb),
                                     trans_b ? " (K, B transposed)" : " (N)"));
  }
  if (ldc < std::max<int64_t>(1, N)) {
    return ArgError(fn, absl::StrCat("ldc = ", ldc, " < ", std::max<int64_t>(1, N), " (N)"));
  }
  if (M == 0 || N == 0 || batch == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "C", C));
  if (K > 0) {
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "A", A));
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "B", B));
  }
  if (batch > 1 && stride_c < (M - 1) * ldc + N) {
    return ArgError(fn, absl::StrCat("stride_c = ", stride_c, " makes the ", batch,
                                     " output matrices overlap (need >= ", (M - 1) * ldc + N,
                                     ")"));
  }
  return absl::OkStatus();
}

absl::Status LtGemm(const char* fn, const GemmTypes& t, bool trans_a, bool trans_b, int64_t M,
                    int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
                    int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta,
                    void* C, int64_t ldc, int64_t stride_c, int64_t batch, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(Validate(fn, trans_a, trans_b, M, N, K, A, lda, stride_a, B, ldb,
                                stride_b, C, ldc, stride_c, batch));
  if (M == 0 || N == 0 || batch == 0) return absl::OkStatus();
  cudaStream_t s = AsCudaStream(stream);
  if (K == 0) {
    const int threads = 256;
    const unsigned blocks = internal::GridFor(batch * M * N, threads);
    if (t.c == CUDA_R_32F) {
      ScaleCKernel<<<blocks, threads, 0, s>>>(M, N, ldc, stride_c, batch, beta,
                                              static_cast<float*>(C));
    } else {
      ScaleCKernel<<<blocks, threads, 0, s>>>(M, N, ldc, stride_c, batch, beta,
                                              static_cast<__nv_bfloat16*>(C));
    }
    return LaunchStatus(fn);
  }

  int device = 0;
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), fn));
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  RLVR_CUDA_RETURN_IF_ERROR(GetHandleAndWorkspace(device, stream, &handle, &workspace));

  // Column-major problem: D[m', n'] = op'(first)[m', K] op'(second)[K, n'], m' = N, n' = M.
  const void* first = B;
  const void* second = A;
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Stored shapes (column-major rows x cols): first is N x K (or K x N transposed), second is
  // K x M (or M x K transposed), C is N x M.
  const int64_t first_rows = trans_b ? K : N, first_cols = trans_b ? N : K;
  const int64_t second_rows = trans_a ? M : K, second_cols = trans_a ? K : M;

  OpDesc op;
  RLVR_RETURN_IF_ERROR_LT(cublasLtMatmulDescCreate(&op.d, t.compute, CUDA_R_32F),
                          "cublasLtMatmulDescCreate");
  RLVR_RETURN_IF_ERROR_LT(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSA,
                                                         &op_first, sizeof(op_first)),
                          "cublasLtMatmulDescSetAttribute(TRANSA)");
  RLVR_RETURN_IF_ERROR_LT(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSB,
                                                         &op_second, sizeof(op_second)),
                          "cublasLtMatmulDescSetAttribute(TRANSB)");
  LayoutDesc la, lb, lc;
  RLVR_CUDA_RETURN_IF_ERROR(MakeLayout(t.ab, first_rows, first_cols, ldb, batch, stride_b, &la));
  RLVR_CUDA_RETURN_IF_ERROR(MakeLayout(t.ab, second_rows, second_cols, lda, batch, stride_a, &lb));
  RLVR_CUDA_RETURN_IF_ERROR(MakeLayout(t.c, N, M, ldc, batch, stride_c, &lc));

  const int64_t align_first = AlignmentBytes(first, batch > 1 ? stride_b * t.ab_size : 0);
  const int64_t align_second = AlignmentBytes(second, batch > 1 ? stride_a * t.ab_size : 0);
  const int64_t align_c = AlignmentBytes(C, batch > 1 ? stride_c * t.c_size : 0);
  const std::array<int64_t, 20> key = {
      device,        static_cast<int64_t>(t.ab), static_cast<int64_t>(t.c),
      static_cast<int64_t>(t.compute), trans_a, trans_b, M, N, K, lda, ldb, ldc,
      batch > 1 ? stride_a : 0,  batch > 1 ? stride_b : 0, batch > 1 ? stride_c : 0, batch,
      align_first,   align_second, align_c, beta == 0.0f};

  cublasLtMatmulAlgo_t algo;
  bool have_algo = false;
  {
    LtState& st = State();
    std::lock_guard<std::mutex> lock(st.mu);
    auto it = st.algos.find(key);
    if (it != st.algos.end()) {
      algo = it->second;
      have_algo = true;
    }
  }
  if (!have_algo) {
    PrefDesc pref;
    RLVR_RETURN_IF_ERROR_LT(cublasLtMatmulPreferenceCreate(&pref.d),
                            "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = kWorkspaceBytes;
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &ws, sizeof(ws)),
        "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
    const uint32_t a1 = static_cast<uint32_t>(align_first), a2 = static_cast<uint32_t>(align_second),
                   ac = static_cast<uint32_t>(align_c);
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                             &a1, sizeof(a1)),
        "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_A_BYTES)");
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                             &a2, sizeof(a2)),
        "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_B_BYTES)");
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                             &ac, sizeof(ac)),
        "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_C_BYTES)");
    RLVR_RETURN_IF_ERROR_LT(
        cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                             &ac, sizeof(ac)),
        "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_D_BYTES)");
    cublasLtMatmulHeuristicResult_t result = {};
    int returned = 0;
    RLVR_RETURN_IF_ERROR_LT(cublasLtMatmulAlgoGetHeuristic(handle, op.d, la.d, lb.d, lc.d, lc.d,
                                                           pref.d, 1, &result, &returned),
                            "cublasLtMatmulAlgoGetHeuristic");
    if (returned == 0) {
      return absl::InternalError(absl::StrCat(fn, ": cuBLASLt has no algorithm for M=", M, " N=",
                                              N, " K=", K, " batch=", batch));
    }
    algo = result.algo;
    LtState& st = State();
    std::lock_guard<std::mutex> lock(st.mu);
    st.algos.emplace(key, algo);
  }
  RLVR_RETURN_IF_ERROR_LT(cublasLtMatmul(handle, op.d, &alpha, first, la.d, second, lb.d, &beta,
                                         C, lc.d, C, lc.d, &algo, workspace, kWorkspaceBytes,
                                         AsCudaStream(stream)),
                          fn);
  return absl::OkStatus();
}

cublasComputeType_t ComputeFor(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::kTf32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GemmPrecision::kBf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case GemmPrecision::kHighest:
      break;
  }
  return CUBLAS_COMPUTE_32F;
}

constexpr GemmTypes kBf16ToBf16 = {CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 2, 2};
constexpr GemmTypes kBf16ToF32 = {CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 2, 4};

}  // namespace

absl::Status GemmF32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, GemmPrecision precision, Stream stream) {
  const GemmTypes t = {CUDA_R_32F, CUDA_R_32F, ComputeFor(precision), 4, 4};
  return LtGemm("GemmF32", t, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C,
                ldc, 0, 1, stream);
}

absl::Status GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      uint16_t* C, int64_t ldc, Stream stream) {
  return LtGemm("GemmBf16", kBf16ToBf16, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0,
                beta, C, ldc, 0, 1, stream);
}

absl::Status GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      float* C, int64_t ldc, Stream stream) {
  return LtGemm("GemmBf16", kBf16ToF32, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0,
                beta, C, ldc, 0, 1, stream);
}

absl::Status GemmStridedBatchedF32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                   float alpha, const float* A, int64_t lda, int64_t stride_a,
                                   const float* B, int64_t ldb, int64_t stride_b, float beta,
                                   float* C, int64_t ldc, int64_t stride_c, int64_t batch,
                                   GemmPrecision precision, Stream stream) {
  const GemmTypes t = {CUDA_R_32F, CUDA_R_32F, ComputeFor(precision), 4, 4};
  return LtGemm("GemmStridedBatchedF32", t, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B,
                ldb, stride_b, beta, C, ldc, stride_c, batch, stream);
}

absl::Status GemmStridedBatchedBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                    float alpha, const uint16_t* A, int64_t lda,
                                    int64_t stride_a, const uint16_t* B, int64_t ldb,
                                    int64_t stride_b, float beta, uint16_t* C, int64_t ldc,
                                    int64_t stride_c, int64_t batch, Stream stream) {
  return LtGemm("GemmStridedBatchedBf16", kBf16ToBf16, trans_a, trans_b, M, N, K, alpha, A, lda,
                stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch, stream);
}

absl::Status GemmStridedBatchedBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                    float alpha, const uint16_t* A, int64_t lda,
                                    int64_t stride_a, const uint16_t* B, int64_t ldb,
                                    int64_t stride_b, float beta, float* C, int64_t ldc,
                                    int64_t stride_c, int64_t batch, Stream stream) {
  return LtGemm("GemmStridedBatchedBf16", kBf16ToF32, trans_a, trans_b, M, N, K, alpha, A, lda,
                stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch, stream);
}

}  // namespace rlvr::kernels::cuda
