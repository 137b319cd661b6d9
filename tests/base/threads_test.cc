// The thread pool: every item of a ParallelFor runs exactly once, whether the workers are
// spinning (back-to-back regions) or asleep (a region after an idle pause), nested calls run
// inline, and the pool can be resized between regions.
#include "engine/base/threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3 {
namespace {

class ThreadsTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SetNumThreads(GetParam()); }
  void TearDown() override { SetNumThreads(0); }
};

// Runs one region over n items and checks each was visited once.
void ExpectEachItemOnce(int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  ParallelFor(n, grain, [&](int64_t b, int64_t e) {
    ASSERT_LE(0, b);
    ASSERT_LT(b, e);
    ASSERT_LE(e, n);
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "item " << i << " of " << n;
}

TEST_P(ThreadsTest, EveryItemRunsOnceForAnySizeAndGrain) {
  for (int64_t n : {1, 2, 3, 7, 64, 1000})
    for (int64_t grain : {1, 2, 5, 64, 5000}) ExpectEachItemOnce(n, grain);
}

TEST_P(ThreadsTest, BackToBackRegionsLoseNoWork) {
  std::atomic<int64_t> sum{0};
  constexpr int kRegions = 5000;
  for (int r = 0; r < kRegions; ++r)
    ParallelFor(4, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b, std::memory_order_relaxed); });
  EXPECT_EQ(sum.load(), int64_t{4} * kRegions);
}

TEST_P(ThreadsTest, RegionsAfterIdlePausesWakeSleepingWorkers) {
  for (int r = 0; r < 5; ++r) {
    // Longer than the workers spin, so they are asleep when the region is published.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ExpectEachItemOnce(100, 1);
  }
}

TEST_P(ThreadsTest, NestedCallsRunInline) {
  std::atomic<int64_t> inner{0};
  ParallelFor(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto caller = std::this_thread::get_id();
      ParallelFor(10, 1, [&](int64_t ib, int64_t ie) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        inner.fetch_add(ie - ib);
      });
    }
  });
  EXPECT_EQ(inner.load(), 80);
}

TEST_P(ThreadsTest, UsesTheRequestedThreadCount) {
  EXPECT_EQ(NumThreads(), GetParam());
  std::mutex mu;
  std::vector<std::thread::id> ids;
  ParallelFor(GetParam(), 1, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lk(mu);
    for (int64_t i = b; i < e; ++i) ids.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(ids.size(), static_cast<size_t>(GetParam()));
  // One chunk per thread: every item on a different thread.
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t j = i + 1; j < ids.size(); ++j) EXPECT_NE(ids[i], ids[j]);
}

// Balanced regions: every item once, in pieces that start on multiples of the piece size.
TEST_P(ThreadsTest, BalancedRunsEveryItemOnceInWholePieces) {
  for (int64_t n : {1, 2, 3, 7, 64, 1000})
    for (int64_t piece : {1, 2, 5, 64, 5000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      ParallelForBalanced(n, piece, [&](int64_t b, int64_t e) {
        ASSERT_LE(0, b);
        ASSERT_LT(b, e);
        ASSERT_LE(e, n);
        if (n > piece) {
          ASSERT_EQ(b % piece, 0) << "n " << n << " piece " << piece;
          ASSERT_TRUE(e - b == piece || e == n) << "n " << n << " piece " << piece;
        }
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "item " << i << " of " << n << ", piece " << piece;
    }
}

// A thread stuck on the first piece of its share: the others finish the rest of that share.
TEST_P(ThreadsTest, BalancedThreadsTakeOverAStalledShare) {
  if (NumThreads() < 2) GTEST_SKIP() << "needs two threads";
  constexpr int64_t kItems = 200;
  std::atomic<int64_t> done{0};
  std::atomic<bool> waited_out{false};
  ParallelForBalanced(kItems, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (i == 0) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (done.load() < kItems - 1)
          if (std::chrono::steady_clock::now() > deadline) {
            waited_out = true;
            break;
          }
      }
      done.fetch_add(1);
    }
  });
  EXPECT_FALSE(waited_out.load()) << "item 0's thread waited while the rest of its share stayed undone";
  EXPECT_EQ(done.load(), kItems);
}

TEST_P(ThreadsTest, BalancedRegionsNestAndFollowPlainOnes) {
  std::atomic<int64_t> sum{0};
  for (int r = 0; r < 500; ++r) {
    ParallelFor(4, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
    ParallelForBalanced(9, 2, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        sum.fetch_add(1);
        ParallelForBalanced(3, 1, [&](int64_t ib, int64_t ie) { sum.fetch_add(ie - ib); });
      }
    });
  }
  EXPECT_EQ(sum.load(), int64_t{500} * (4 + 9 + 9 * 3));
}

INSTANTIATE_TEST_SUITE_P(Pool, ThreadsTest, ::testing::Values(1, 2, 3, 8));

}  // namespace
}  // namespace dsv3
