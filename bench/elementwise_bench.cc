// Microbenchmarks of the operators a decode step runs on the calling thread while the other
// waits (a step's few elements stay below the pool's grain): SiluMul over the picked experts'
// intermediate rows, RmsNorm of one token with a BF16 weight, ArgMax over the vocabulary; and
// what scoring and sampling do with each row of logits. Sizes are bench-v3-mini's (and
// DeepSeek-V3's vocabulary); one thread unless said.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"
#include "engine/model/sampler.h"

namespace dsv3 {
namespace {

std::vector<float> Random(int64_t n, float stddev) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Runs a benchmark body on `kernel` with `threads` threads, then puts both back and labels the
// run; false (the run marked skipped) where the CPU lacks the kernel.
class KernelScope {
 public:
  KernelScope(benchmark::State& state, LinearKernel kernel, int threads) : state_(state), kernel_(kernel) {
    ok_ = (kernel != LinearKernel::kAvx2 || GetCpuFeatures().HasAvx2Set()) &&
          (kernel != LinearKernel::kAvx512 || GetCpuFeatures().HasAvx512VnniSet());
    if (!ok_) {
      state.SkipWithError("CPU lacks the kernel's instructions");
      return;
    }
    SetNumThreads(threads);
    SetLinearKernel(kernel);
  }
  ~KernelScope() {
    if (!ok_) return;
    SetLinearKernel(LinearKernel::kAuto);
    SetNumThreads(0);
    state_.SetLabel(LinearKernelName(kernel_));
  }
  bool ok() const { return ok_; }

 private:
  benchmark::State& state_;
  LinearKernel kernel_;
  bool ok_ = false;
};

// Args: kernel (LinearKernel: 1 reference = std::exp, 2 AVX2), elements. 4096 = a decode
// step's six routed experts and two shared ones (moe intermediate 512).
void BM_SiluMul(benchmark::State& state) {
  KernelScope scope(state, static_cast<LinearKernel>(state.range(0)), 1);
  if (!scope.ok()) return;
  const int64_t n = state.range(1);
  // SiluMul writes in place: each iteration takes the next of kCopies fresh copies of the
  // gate, all refilled (untimed) once every kCopies iterations.
  constexpr int64_t kCopies = 64;
  const auto gate = Random(n, 3.0f), up = Random(n, 1.0f);
  std::vector<float> copies(static_cast<size_t>(kCopies * n));
  int64_t next = kCopies;
  for (auto _ : state) {
    if (next == kCopies) {
      state.PauseTiming();
      for (int64_t c = 0; c < kCopies; ++c) std::copy(gate.begin(), gate.end(), copies.begin() + c * n);
      next = 0;
      state.ResumeTiming();
    }
    float* g = copies.data() + (next++) * n;
    SiluMul(g, up.data(), n);
    benchmark::DoNotOptimize(g);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}
BENCHMARK(BM_SiluMul)
    ->Args({static_cast<int64_t>(LinearKernel::kReference), 4096})
    ->Args({static_cast<int64_t>(LinearKernel::kAvx2), 4096})
    ->UseRealTime()
    ->MinTime(0.2);

// One token's RmsNorm over the hidden size with a BF16 weight (as checkpoints store norms).
void BM_RmsNormBf16(benchmark::State& state) {
  const int64_t D = state.range(0);
  SetNumThreads(1);
  const auto x = Random(D, 1.0f), w = Random(D, 1.0f);
  std::vector<uint16_t> w16(static_cast<size_t>(D));
  for (int64_t i = 0; i < D; ++i) w16[i] = F32ToBF16(w[i]);
  TensorView weight;
  weight.dtype = DType::kBF16;
  weight.shape = Shape{D};
  weight.data = w16.data();
  std::vector<float> y(static_cast<size_t>(D));
  for (auto _ : state) {
    RmsNorm(x.data(), weight, 1, D, 1e-6f, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  SetNumThreads(0);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * D);
}
BENCHMARK(BM_RmsNormBf16)->Arg(1536)->Arg(7168)->UseRealTime()->MinTime(0.2);

// Greedy decoding's ArgMax over DeepSeek-V3's 129280 logits.
void BM_ArgMax(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto logits = Random(n, 2.0f);
  for (auto _ : state) benchmark::DoNotOptimize(ArgMax(logits.data(), n));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}
BENCHMARK(BM_ArgMax)->Arg(129280)->UseRealTime()->MinTime(0.2);

// Scoring's log-partition of one row of DeepSeek-V3's 129280 logits (every scored position
// takes one). Args: kernel (1 reference: std::exp in double, as scoring did inline; 2 AVX2;
// 3 AVX-512, the same bits with sixteen-lane exponentials), threads.
void BM_LogSumExp(benchmark::State& state) {
  KernelScope scope(state, static_cast<LinearKernel>(state.range(0)), static_cast<int>(state.range(1)));
  if (!scope.ok()) return;
  const int64_t n = 129280;
  const auto logits = Random(n, 2.0f);
  const float m = *std::max_element(logits.begin(), logits.end());
  for (auto _ : state) benchmark::DoNotOptimize(LogSumExpShifted(logits.data(), n, m));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}
BENCHMARK(BM_LogSumExp)
    ->Args({static_cast<int64_t>(LinearKernel::kReference), 1})
    ->Args({static_cast<int64_t>(LinearKernel::kAvx2), 1})
    ->Args({static_cast<int64_t>(LinearKernel::kAvx2), 2})
    ->Args({static_cast<int64_t>(LinearKernel::kAvx512), 1})
    ->Args({static_cast<int64_t>(LinearKernel::kAvx512), 2})
    ->UseRealTime()
    ->MinTime(0.2);

// One sampled token over DeepSeek-V3's 129280 logits at temperature 0.8 (HumanEval's pass@k
// sampling, `dsv3 generate --temperature`). Args: top_k (0: none), top_p in hundredths, and the
// logits: 0 flat (N(0, 2), as an untrained checkpoint's), 1 peaked (the same plus 12 on ten
// tokens: most of the mass on a few, as a trained model's).
void BM_SamplerNext(benchmark::State& state) {
  const int64_t n = 129280;
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = state.range(0);
  p.top_p = static_cast<float>(state.range(1)) / 100.0f;
  auto logits = Random(n, 2.0f);
  if (state.range(2) == 1)
    for (int64_t i = 0; i < 10; ++i) logits[static_cast<size_t>((i * 7919 + 13) % n)] += 12.0f;
  Sampler sampler(p, 0);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.Next(logits.data(), n));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}
BENCHMARK(BM_SamplerNext)
    ->Args({0, 100, 0})
    ->Args({0, 95, 0})
    ->Args({0, 100, 1})
    ->Args({0, 95, 1})
    ->Args({40, 95, 1})
    ->UseRealTime()
    ->MinTime(0.2);

}  // namespace
}  // namespace dsv3
