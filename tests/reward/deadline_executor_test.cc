#include "reward/deadline_executor.h"

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace rlvr::reward {
namespace {

TEST(DeadlineExecutorTest, RunsEveryTask) {
  DeadlineExecutor ex(2, 4);
  auto count = std::make_shared<std::atomic<int>>(0);
  std::vector<std::shared_ptr<DeadlineExecutor::Task>> tasks;
  for (int i = 0; i < 100; ++i) {
    auto t = ex.Submit([count] { count->fetch_add(1); });
    ASSERT_TRUE(t.ok());
    tasks.push_back(*t);
  }
  for (auto& t : tasks) EXPECT_TRUE(ex.Wait(t, absl::Seconds(30)).ok());
  EXPECT_EQ(count->load(), 100);
}

TEST(DeadlineExecutorTest, HungTaskIsAbandonedAndThePoolKeepsWorking) {
  auto release = std::make_shared<absl::Notification>();
  {
    DeadlineExecutor ex(1, 2);
    auto hung = ex.Submit([release] { release->WaitForNotification(); });
    ASSERT_TRUE(hung.ok());
    auto after = std::make_shared<std::atomic<int>>(0);
    auto next = ex.Submit([after] { after->store(1); });
    ASSERT_TRUE(next.ok());
    absl::Status s = ex.Wait(*hung, absl::Milliseconds(50));
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(ex.abandoned(), 1);
    // The single worker is stuck, yet the queued task runs on the replacement.
    EXPECT_TRUE(ex.Wait(*next, absl::Seconds(30)).ok());
    EXPECT_EQ(after->load(), 1);
    // A second hung task reaches the cap: further work is refused.
    auto hung2 = ex.Submit([release] { release->WaitForNotification(); });
    ASSERT_TRUE(hung2.ok());
    EXPECT_EQ(ex.Wait(*hung2, absl::Milliseconds(20)).code(), absl::StatusCode::kDeadlineExceeded);
    auto refused = ex.Submit([] {});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  }
  // The executor is gone; the stuck workers finish on their own.
  release->Notify();
}

TEST(DeadlineExecutorTest, TimeoutCountsFromStartNotFromSubmit) {
  DeadlineExecutor ex(1, 2);
  std::vector<std::shared_ptr<DeadlineExecutor::Task>> tasks;
  for (int i = 0; i < 5; ++i) {
    auto t = ex.Submit([] { absl::SleepFor(absl::Milliseconds(40)); });
    ASSERT_TRUE(t.ok());
    tasks.push_back(*t);
  }
  // Each task runs 40 ms; the last starts ~160 ms after submission but must not time out.
  for (auto& t : tasks) EXPECT_TRUE(ex.Wait(t, absl::Seconds(5)).ok());
  EXPECT_EQ(ex.abandoned(), 0);
}

}  // namespace
}  // namespace rlvr::reward
