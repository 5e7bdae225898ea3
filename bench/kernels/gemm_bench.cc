// GEMM GFLOP/s of kernels::Gemm (OpenBLAS, GEMV for one-row products) on small-transformer
// shapes, and batch-1 decode against calling OpenBLAS sgemm directly with M = 1 (the peer).
// The CPU peak is about 116 GFLOP/s fp32 per core (shared/DESIGN.md). Threads: OMP_NUM_THREADS.
//
//   build-*/bin/kernels_gemm_bench            (prints the headline last)
#include <cblas.h>

#include <cstdio>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/matmul.h"

namespace {

std::vector<float> Rand(int64_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void SetFlops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// y[M, N] = x[M, K] W[N, K]^T (a Linear layer forward: M tokens, K in, N out).
void BM_LinearForward(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  auto x = Rand(M * K), w = Rand(N * K);
  std::vector<float> y(M * N);
  for (auto _ : state) {
    rlvr::kernels::Gemm<float>(false, true, M, N, K, 1.0f, x.data(), K, w.data(), K, 0.0f,
                               y.data(), N);
    benchmark::DoNotOptimize(y.data());
  }
  SetFlops(state, 2.0 * M * N * K);
}

// dW[N, K] += dy[M, N]^T x[M, K] (the weight gradient of the same layer).
void BM_LinearWeightGrad(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  auto x = Rand(M * K), dy = Rand(M * N);
  std::vector<float> dw(N * K, 0.0f);
  for (auto _ : state) {
    rlvr::kernels::Gemm<float>(true, false, N, K, M, 1.0f, dy.data(), N, x.data(), K, 1.0f,
                               dw.data(), K);
    benchmark::DoNotOptimize(dw.data());
  }
  SetFlops(state, 2.0 * M * N * K);
}

// The same products under MatmulPrecision::kBf16 (AVX512-BF16; peak ~233 GFLOP/s per core),
// side by side with the fp32 rows above: range(3) = 0 forward, 1 weight gradient.
void BM_Bf16(benchmark::State& state) {
  if (!rlvr::kernels::Bf16MatmulAvailable()) {
    state.SkipWithError("no AVX512-BF16 on this CPU");
    return;
  }
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  auto x = Rand(M * K), w = Rand(N * K), dy = Rand(M * N);
  std::vector<float> y(M * N), dw(N * K, 0.0f);
  rlvr::kernels::SetMatmulPrecision(rlvr::kernels::MatmulPrecision::kBf16);
  for (auto _ : state) {
    if (state.range(3) == 0) {
      rlvr::kernels::Gemm<float>(false, true, M, N, K, 1.0f, x.data(), K, w.data(), K, 0.0f,
                                 y.data(), N);
    } else {
      rlvr::kernels::Gemm<float>(true, false, N, K, M, 1.0f, dy.data(), N, x.data(), K, 1.0f,
                                 dw.data(), K);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dw.data());
  }
  rlvr::kernels::SetMatmulPrecision(rlvr::kernels::MatmulPrecision::kHighest);
  SetFlops(state, 2.0 * M * N * K);
}

// The peer for decode: OpenBLAS sgemm called directly with one row.
void BM_DecodeSgemmDirect(benchmark::State& state) {
  const int64_t K = state.range(1), N = state.range(2);
  auto x = Rand(K), w = Rand(N * K);
  std::vector<float> y(N);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, N, K, 1.0f, x.data(), K, w.data(), K,
                0.0f, y.data(), N);
    benchmark::DoNotOptimize(y.data());
  }
  SetFlops(state, 2.0 * N * K);
}

// Transformer-ish shapes: C = 512 or 1024, MLP intermediate 1408 / 2816, vocab 32768;
// M = 1024 tokens (training / prefill) and M = 1 (decode).
void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t M : {1024, 1}) {
    b->Args({M, 512, 1536});   // fused qkv of C = 512
    b->Args({M, 512, 1408});   // gate / up
    b->Args({M, 1408, 512});   // down
    b->Args({M, 1024, 2816});  // gate / up of C = 1024
    b->Args({M, 512, 32768});  // LM head
  }
}

void DecodeShapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 512, 1408});
  b->Args({1, 1024, 2816});
  b->Args({1, 512, 32768});
}

BENCHMARK(BM_LinearForward)->Apply(Shapes)->UseRealTime();
BENCHMARK(BM_LinearWeightGrad)->Args({1024, 512, 1408})->Args({1024, 1024, 2816})->UseRealTime();
// The small MoE preset's training shapes (2048 tokens, C = 256, experts of 256, vocab 3008) in
// both precisions.
BENCHMARK(BM_LinearForward)->Args({512, 256, 256})->Args({2048, 256, 3008})->UseRealTime();
BENCHMARK(BM_LinearWeightGrad)->Args({512, 256, 256})->Args({2048, 256, 3008})->UseRealTime();
BENCHMARK(BM_Bf16)
    ->Args({512, 256, 256, 0})
    ->Args({2048, 256, 3008, 0})
    ->Args({1024, 1024, 2816, 0})
    ->Args({512, 256, 256, 1})
    ->Args({2048, 256, 3008, 1})
    ->Args({1024, 1024, 2816, 1})
    ->UseRealTime();
BENCHMARK(BM_DecodeSgemmDirect)->Apply(DecodeShapes)->UseRealTime();

// Collects the decode numbers for the headline.
class Headline : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      const std::string name = r.benchmark_name();
      auto it = r.counters.find("GFLOP/s");
      if (it == r.counters.end()) continue;
      if (name == "BM_LinearForward/1/1024/2816/real_time") ours_ = it->second.value;
      if (name == "BM_DecodeSgemmDirect/1/1024/2816/real_time") peer_ = it->second.value;
      if (name == "BM_LinearForward/1024/1024/2816/real_time") big_ = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Print() const {
    std::printf("gemm M=1024 K=1024 N=2816: rlvr %.1f GFLOP/s (fp32 peak ~116 per core)\n", big_);
    std::printf("decode_gemm M=1 K=1024 N=2816: rlvr %.1f GFLOP/s, peer %.1f GFLOP/s, ratio %.2f\n",
                ours_, peer_, peer_ > 0 ? ours_ / peer_ : 0.0);
  }

 private:
  double ours_ = 0, peer_ = 0, big_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Headline reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.Print();
  benchmark::Shutdown();
  return 0;
}
