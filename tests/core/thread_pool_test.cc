#include "core/thread_pool.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "gtest/gtest.h"

namespace rlvr {
namespace {

TEST(ThreadPoolTest, ParallelForVisitsEveryIndexOnce) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.num_threads(), 3);
  for (int64_t n : {0, 1, 2, 7, 1000}) {
    for (int64_t grain : {0, 1, 3, 5000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(
          n, [&](int64_t i) { hits[i].fetch_add(1); }, grain);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << grain << " " << i;
    }
  }
}

TEST(ThreadPoolTest, ScheduleRunsAllTasks) {
  std::atomic<int> sum{0};
  {
    ThreadPool pool(2);
    absl::BlockingCounter done(100);
    for (int i = 1; i <= 100; ++i) {
      pool.Schedule([&, i] {
        sum.fetch_add(i);
        done.DecrementCount();
      });
    }
    done.Wait();
  }
  EXPECT_EQ(sum.load(), 5050);
}

TEST(ThreadPoolTest, NestedParallelForDoesNotDeadlock) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.ParallelFor(
      8,
      [&](int64_t) {
        pool.ParallelFor(
            100, [&](int64_t j) { total.fetch_add(j); }, 1);
      },
      1);
  EXPECT_EQ(total.load(), 8 * 4950);
}

TEST(ThreadPoolTest, DestructorDrainsQueue) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(1);
    for (int i = 0; i < 50; ++i) pool.Schedule([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
}  // namespace rlvr
