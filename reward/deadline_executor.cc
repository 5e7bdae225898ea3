#include "reward/deadline_executor.h"

#include <deque>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace rlvr::reward {

struct DeadlineExecutor::Task {
  std::function<void()> fn;
  // Guarded by State::mu.
  bool started = false;
  bool done = false;
  bool cancelled = false;
  bool abandoned = false;
  absl::Time started_at;
};

struct DeadlineExecutor::State {
  absl::Mutex mu;
  std::deque<std::shared_ptr<Task>> queue ABSL_GUARDED_BY(mu);
  int target_workers ABSL_GUARDED_BY(mu) = 0;
  int live_workers ABSL_GUARDED_BY(mu) = 0;  // including stuck ones
  int stuck ABSL_GUARDED_BY(mu) = 0;
  int max_abandoned = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;
};

namespace {

void WorkerLoop(std::shared_ptr<DeadlineExecutor::State> state);

void StartWorker(const std::shared_ptr<DeadlineExecutor::State>& state) {
  // Workers are detached and own a reference to the state, so a worker stuck in a task can
  // outlive the executor safely.
  std::thread(WorkerLoop, state).detach();
}

}  // namespace

namespace {

void WorkerLoop(std::shared_ptr<DeadlineExecutor::State> state) {
  auto& s = *state;
  while (true) {
    std::shared_ptr<DeadlineExecutor::Task> task;
    {
      absl::MutexLock lock(&s.mu);
      s.mu.Await(absl::Condition(
          +[](DeadlineExecutor::State* st)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return st->stopping || !st->queue.empty(); },
          &s));
      if (s.queue.empty()) {  // stopping
        --s.live_workers;
        return;
      }
      task = std::move(s.queue.front());
      s.queue.pop_front();
      task->started = true;
      task->started_at = absl::Now();
    }
    task->fn();
    {
      absl::MutexLock lock(&s.mu);
      task->done = true;
      if (task->abandoned) {
        // A replacement was started when this task was abandoned: this worker is surplus.
        --s.stuck;
        --s.live_workers;
        return;
      }
    }
  }
}

}  // namespace

DeadlineExecutor::DeadlineExecutor(int num_threads, int max_abandoned)
    : state_(std::make_shared<State>()) {
  const int n = num_threads > 0 ? num_threads : 1;
  state_->max_abandoned = max_abandoned > 0 ? max_abandoned : 1;
  {
    absl::MutexLock lock(&state_->mu);
    state_->target_workers = n;
    state_->live_workers = n;
  }
  for (int i = 0; i < n; ++i) StartWorker(state_);
}

DeadlineExecutor::~DeadlineExecutor() {
  absl::MutexLock lock(&state_->mu);
  state_->stopping = true;
  for (auto& t : state_->queue) t->cancelled = true;
  state_->queue.clear();
  // Wait (boundedly) for the workers to leave, so none is mid-task while the process tears
  // down; a worker in a task nobody waited for (and so never abandoned) may be hung, hence the
  // bound. Stuck workers keep their own reference to the state.
  state_->mu.AwaitWithTimeout(
      absl::Condition(
          +[](State* st) ABSL_NO_THREAD_SAFETY_ANALYSIS { return st->live_workers <= st->stuck; },
          state_.get()),
      absl::Seconds(5));
}

absl::StatusOr<std::shared_ptr<DeadlineExecutor::Task>> DeadlineExecutor::Submit(
    std::function<void()> fn) {
  auto task = std::make_shared<Task>();
  task->fn = std::move(fn);
  absl::MutexLock lock(&state_->mu);
  if (state_->stuck >= state_->max_abandoned) {
    return absl::UnavailableError(
        absl::StrCat("verifier pool: ", state_->stuck,
                     " workers are stuck in verifiers that never returned; refusing more work"));
  }
  state_->queue.push_back(task);
  return task;
}

absl::Status DeadlineExecutor::Wait(const std::shared_ptr<Task>& task, absl::Duration timeout) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  Task* t = task.get();
  if (t->cancelled) return absl::CancelledError("verifier task was cancelled");
  // Queued tasks wait for a worker without a clock: the queue is FIFO and every worker stuck past
  // its deadline is replaced, so a task ahead of the caller's always starts.
  s.mu.Await(absl::Condition(
      +[](Task* x) ABSL_NO_THREAD_SAFETY_ANALYSIS { return x->started || x->done || x->cancelled; },
      t));
  if (t->cancelled) return absl::CancelledError("verifier task was cancelled");
  s.mu.AwaitWithDeadline(absl::Condition(
                             +[](Task* x) ABSL_NO_THREAD_SAFETY_ANALYSIS { return x->done; }, t),
                         t->started_at + timeout);
  if (t->done) return absl::OkStatus();
  if (!t->abandoned) {
    t->abandoned = true;
    ++s.stuck;
    ++s.live_workers;
    StartWorker(state_);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("did not finish within ", absl::FormatDuration(timeout)));
}

int DeadlineExecutor::abandoned() const {
  absl::MutexLock lock(&state_->mu);
  return state_->stuck;
}

}  // namespace rlvr::reward
