#include "engine/base/threads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3 {

namespace {

thread_local bool tls_in_parallel = false;

// Decode runs a hundred or more parallel regions per token, a few hundred microseconds
// apart; waking a sleeping thread through the kernel costs ~20 us on a VM, which is several
// percent of a token. So a thread that has just finished work spins for a short while
// (kSpinSeconds) before it sleeps: back-to-back regions find it awake, and an idle pool still
// costs no CPU. Publishing a region and waking sleepers follow the classic pattern: the
// publisher bumps the region's generation then reads `sleepers_`; a sleeper counts itself in
// `sleepers_` then re-reads the generation (both sequentially consistent), so one of them sees
// the other.
class Pool {
 public:
  explicit Pool(int n) : n_(std::max(1, n)) {
    // Spinning only helps when every thread has a core of its own.
    spin_ = n_ <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this, i] { Loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      region_.stop = true;
      region_.generation.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return n_; }

  // piece == 0: one chunk of at least `grain` items per thread. piece > 0: balanced (see
  // ParallelForBalanced), a share per thread taken a piece at a time.
  void Run(int64_t n, int64_t grain, int64_t piece, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    const int64_t pieces = piece > 0 ? (n + piece - 1) / piece : 0;
    const int64_t chunks = piece > 0 ? std::min<int64_t>(n_, pieces)
                                     : std::min<int64_t>(n_, std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
    tls_in_parallel = true;
    if (chunks == 1) {
      fn(0, n);
      tls_in_parallel = false;
      return;
    }
    region_.fn = &fn;
    region_.total = n;
    region_.chunks = chunks;
    region_.piece = piece;
    for (int64_t i = 0; i < chunks && piece > 0; ++i)
      shares_[static_cast<size_t>(i)].range.store(Pack(pieces * i / chunks, pieces * (i + 1) / chunks),
                                                  std::memory_order_relaxed);
    // Every worker acknowledges every region, even one with no chunk for it, so none can
    // still be reading the region when the next one rewrites it.
    done_.pending.store(n_ - 1);
    region_.generation.fetch_add(1);  // publishes the fields above to the workers that see it
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    Do(0);
    tls_in_parallel = false;
    if (!SpinUntil([this] { return done_.pending.load(std::memory_order_acquire) <= 0; })) {
      // As a publisher and a sleeper (above): the last worker reads `waiting` after its
      // decrement, this thread reads `pending` after setting it, so one sees the other.
      std::unique_lock<std::mutex> lk(mu_);
      done_.waiting.store(true);
      done_cv_.wait(lk, [this] { return done_.pending.load() <= 0; });
      done_.waiting.store(false);
    }
    region_.fn = nullptr;
  }

 private:
  static constexpr double kSpinSeconds = 200e-6;

  // Spins until done() or kSpinSeconds pass; true when done() became true.
  template <typename Done>
  bool SpinUntil(const Done& done) const {
    if (done()) return true;
    if (!spin_) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(kSpinSeconds);
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (done()) return true;
        CpuRelax();
      }
      if (std::chrono::steady_clock::now() > deadline) return done();
    }
  }

  static void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  void Do(int64_t chunk) {
    if (region_.piece > 0) return DoBalanced(chunk);
    int64_t begin = region_.total * chunk / region_.chunks, end = region_.total * (chunk + 1) / region_.chunks;
    if (begin < end) (*region_.fn)(begin, end);
  }

  // A share's pieces [front, back) in one word, so that its owner (taking the front) and a
  // thief (taking the back) can never both take the last one.
  static uint64_t Pack(int64_t front, int64_t back) {
    return static_cast<uint64_t>(front) << 32 | static_cast<uint64_t>(back);
  }
  static int64_t Front(uint64_t v) { return static_cast<int64_t>(v >> 32); }
  static int64_t Back(uint64_t v) { return static_cast<int64_t>(v & 0xffffffffu); }

  void RunPiece(int64_t p) {
    (*region_.fn)(p * region_.piece, std::min(region_.total, (p + 1) * region_.piece));
  }

  void DoBalanced(int64_t chunk) {
    std::atomic<uint64_t>& own = shares_[static_cast<size_t>(chunk)].range;
    for (;;) {
      uint64_t v = own.load(std::memory_order_relaxed);
      if (Front(v) >= Back(v)) break;
      if (own.compare_exchange_weak(v, Pack(Front(v) + 1, Back(v)), std::memory_order_relaxed)) RunPiece(Front(v));
    }
    for (;;) {  // steal from the back of the share with the most pieces left
      int64_t victim = -1, most = 0;
      for (int64_t i = 0; i < region_.chunks; ++i) {
        const uint64_t v = shares_[static_cast<size_t>(i)].range.load(std::memory_order_relaxed);
        if (Back(v) - Front(v) > most) {
          most = Back(v) - Front(v);
          victim = i;
        }
      }
      if (victim < 0) return;
      std::atomic<uint64_t>& theirs = shares_[static_cast<size_t>(victim)].range;
      uint64_t v = theirs.load(std::memory_order_relaxed);
      if (Front(v) < Back(v) && theirs.compare_exchange_weak(v, Pack(Front(v), Back(v) - 1), std::memory_order_relaxed))
        RunPiece(Back(v) - 1);
    }
  }

  void Loop(int index) {
    tls_in_parallel = true;
    uint64_t seen = 0;
    for (;;) {
      if (!SpinUntil([&] { return region_.generation.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return region_.generation.load() != seen; });
        sleepers_.fetch_sub(1);
      }
      seen = region_.generation.load();
      if (region_.stop) return;
      if (index < region_.chunks) Do(index);
      if (done_.pending.fetch_sub(1) == 1 && done_.waiting.load()) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_one();
      }
    }
  }

  // A share per thread, each on its own cache line (owners and thieves write them concurrently).
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };

  // Written by Run before it publishes a region (generation), read by the workers once they
  // see it: one cache line, so that a worker's first look at a region is a single transfer
  // from the publishing core (one way ~0.3 us between this VM's two vCPUs; with the fields
  // spread over the lines the mutexes share, an empty region took 1.1-1.3 us).
  struct alignas(64) Region {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t total = 0, chunks = 0, piece = 0;
    std::atomic<uint64_t> generation{0};
    bool stop = false;
  };
  // Written by the workers as they finish, read by Run: a line of its own.
  struct alignas(64) Done {
    std::atomic<int> pending{0};
    std::atomic<bool> waiting{false};  // Run sleeps on done_cv_ (past its spin)
  };

  int n_;
  bool spin_ = false;
  std::vector<Share> shares_ = std::vector<Share>(static_cast<size_t>(n_));
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  alignas(64) std::atomic<int> sleepers_{0};
  Region region_;
  Done done_;
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

namespace {

// Runs fn(0, n) on this thread when that is all there is to do (a nested call, at most
// `inline_upto` items, a one-thread pool), else one region on the pool (see Pool::Run).
void Dispatch(int64_t n, int64_t inline_upto, int64_t grain, int64_t piece,
              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (tls_in_parallel || n <= inline_upto) {
    fn(0, n);
    return;
  }
  Pool& pool = GetPool();
  if (pool.size() == 1) {
    fn(0, n);
    return;
  }
  pool.Run(n, grain, piece, fn);
}

}  // namespace

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  Dispatch(n, grain, grain, 0, fn);
}

void ParallelForBalanced(int64_t n, int64_t piece, const std::function<void(int64_t, int64_t)>& fn) {
  piece = std::max<int64_t>(piece, 1);
  piece = std::max<int64_t>(piece, (n >> 31) + 1);  // piece indices fit a share's 32-bit halves
  Dispatch(n, piece, 0, piece, fn);
}

}  // namespace dsv3
