// ForEach: the loop `for i in [0, n): fn(i, scratch)` with one default-constructed Scratch per
// thread, over the OpenMP team (dynamic schedule) when `parallel`, else on the calling thread
// with no OpenMP construct at all. The serial case matters: a region of one thread
// (`#pragma omp parallel if (false)`) is still a region, so an OpenMP-threaded BLAS called inside
// it opens a nested team of new threads, which then spin against the main pool's; on 2 cores a
// batch-1 float32 decode step of the `small` preset went from ~1.3 ms to ~50 ms that way.
#ifndef RLVR_KERNELS_CPU_PARALLEL_H_
#define RLVR_KERNELS_CPU_PARALLEL_H_

#include <cstdint>

namespace rlvr::kernels {

template <typename Scratch, typename Fn>
void ForEach(int64_t n, bool parallel, Fn&& fn) {
  if (!parallel) {
    Scratch scratch;
    for (int64_t i = 0; i < n; ++i) fn(i, scratch);
    return;
  }
#pragma omp parallel
  {
    Scratch scratch;
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) fn(i, scratch);
  }
}

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_CPU_PARALLEL_H_
