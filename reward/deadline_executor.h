// A worker pool whose callers wait for a task with a deadline, and which survives tasks that
// never return.
//
// Submit() queues a task and returns a handle; Wait(handle, timeout) blocks until the task has
// finished or has run for `timeout` (measured from when a worker started it, so a backlog does
// not eat into a task's time). A task that runs past its timeout is abandoned: its worker
// thread keeps running it (C++ cannot kill a thread), a replacement worker is started so the
// pool keeps its capacity, and the abandoned worker exits when (if ever) its task returns.
// At most `max_abandoned` workers may be stuck at once; past that, Submit() refuses work
// (Unavailable), so a verifier that hangs on every input cannot exhaust the process.
//
// Tasks must own everything they touch (capture shared_ptrs): an abandoned task may outlive the
// caller, the executor, and the objects the caller held. The destructor cancels queued tasks,
// stops the workers, and waits at most 5 s for running tasks (never for abandoned ones).
// All methods are thread-safe.
#ifndef RLVR_REWARD_DEADLINE_EXECUTOR_H_
#define RLVR_REWARD_DEADLINE_EXECUTOR_H_

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rlvr::reward {

class DeadlineExecutor {
 public:
  struct Task;   // opaque handle state
  struct State;  // opaque; shared with the (detached) workers

  DeadlineExecutor(int num_threads, int max_abandoned);
  ~DeadlineExecutor();
  DeadlineExecutor(const DeadlineExecutor&) = delete;
  DeadlineExecutor& operator=(const DeadlineExecutor&) = delete;

  // Queues `fn`. Unavailable if too many workers are stuck in abandoned tasks.
  absl::StatusOr<std::shared_ptr<Task>> Submit(std::function<void()> fn);

  // OK once the task has run; DeadlineExceeded if it ran for longer than `timeout` (it is then
  // abandoned, see above); Cancelled if the executor was destroyed before it started. Each task
  // is waited for by one caller.
  absl::Status Wait(const std::shared_ptr<Task>& task, absl::Duration timeout);

  int abandoned() const;  // workers currently stuck in abandoned tasks

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rlvr::reward

#endif  // RLVR_REWARD_DEADLINE_EXECUTOR_H_
