#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <utility>

namespace rlvr {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) {
    num_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  workers_.reserve(num_threads);
  for (int i = 0; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::Schedule(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

void ThreadPool::WorkerLoop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ThreadPool* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, and everything queued has run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  if (grain <= 0) grain = std::max<int64_t>(1, n / (4 * (num_threads() + 1)));
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // Shared with helper tasks that may start after this call returned (they then find no work),
  // hence the shared_ptr.
  struct State {
    std::atomic<int64_t> next{0};
    absl::Mutex mu;
    int64_t done ABSL_GUARDED_BY(mu) = 0;
  };
  auto state = std::make_shared<State>();
  const std::function<void(int64_t)>* body = &fn;
  auto run_chunks = [state, body, n, grain, chunks] {
    while (true) {
      int64_t c = state->next.fetch_add(1);
      if (c >= chunks) return;
      int64_t end = std::min(n, (c + 1) * grain);
      // `body` is only dereferenced for a claimed chunk, and the caller waits for every claimed
      // chunk to finish, so it is still alive here.
      for (int64_t i = c * grain; i < end; ++i) (*body)(i);
      absl::MutexLock lock(&state->mu);
      ++state->done;
    }
  };
  const int64_t helpers = std::min<int64_t>(num_threads(), chunks - 1);
  for (int64_t h = 0; h < helpers; ++h) Schedule(run_chunks);
  run_chunks();
  std::pair<State*, int64_t> wait_for(state.get(), chunks);
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(
      +[](std::pair<State*, int64_t>* p)
           ABSL_NO_THREAD_SAFETY_ANALYSIS { return p->first->done == p->second; },
      &wait_for));
}

}  // namespace rlvr
