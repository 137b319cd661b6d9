#include "engine/base/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3 {

namespace {

thread_local bool tls_in_parallel = false;

class Pool {
 public:
  explicit Pool(int n) : n_(std::max(1, n)) {
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this, i] { Loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return n_; }

  void Run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    int64_t chunks = std::min<int64_t>(n_, std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      total_ = n;
      chunks_ = chunks;
      pending_ = static_cast<int>(chunks) - 1;
      ++generation_;
    }
    cv_.notify_all();
    tls_in_parallel = true;
    Do(0);
    tls_in_parallel = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ <= 0; });
    fn_ = nullptr;
  }

 private:
  void Do(int64_t chunk) {
    int64_t begin = total_ * chunk / chunks_, end = total_ * (chunk + 1) / chunks_;
    if (begin < end) (*fn_)(begin, end);
  }

  void Loop(int index) {
    tls_in_parallel = true;
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (stop_) return;
      if (index >= chunks_) continue;
      lk.unlock();
      Do(index);
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t total_ = 0, chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

std::mutex g_pool_mu;
std::unique_ptr<Pool> g_pool;
int g_requested = 0;

Pool& GetPool() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) {
    int n = g_requested > 0 ? g_requested : static_cast<int>(std::thread::hardware_concurrency());
    g_pool = std::make_unique<Pool>(n);
  }
  return *g_pool;
}

}  // namespace

void SetNumThreads(int n) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  g_requested = n;
  g_pool.reset();
}

int NumThreads() { return GetPool().size(); }

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (tls_in_parallel || n <= grain) {
    fn(0, n);
    return;
  }
  Pool& pool = GetPool();
  if (pool.size() == 1) {
    fn(0, n);
    return;
  }
  pool.Run(n, grain, fn);
}

}  // namespace dsv3
