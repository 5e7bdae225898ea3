// A fixed-size thread pool with a FIFO task queue and a blocking ParallelFor.
//
// Schedule() never blocks. ParallelFor(n, fn) runs fn(i) for every i in [0, n) and returns when
// all calls have finished; the calling thread takes part, and work is handed out by an atomic
// counter, so ParallelFor may be called from inside a pool task (nested calls cannot deadlock:
// if every worker is busy the caller runs the whole range itself). `fn` must not throw.
// The destructor runs the tasks already queued, then joins the workers. All methods are
// thread-safe.
#ifndef RLVR_CORE_THREAD_POOL_H_
#define RLVR_CORE_THREAD_POOL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rlvr {

class ThreadPool {
 public:
  // `num_threads` <= 0 means std::thread::hardware_concurrency() (at least 1).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()); }

  void Schedule(std::function<void()> task);

  // Calls fn(i) for i in [0, n), in chunks of `grain` consecutive indices (grain <= 0 picks
  // about 4 chunks per thread). Blocks until all are done.
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn, int64_t grain = 0);

 private:
  void WorkerLoop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace rlvr

#endif  // RLVR_CORE_THREAD_POOL_H_
