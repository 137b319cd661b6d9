// Microbenchmarks of the multi-query attention kernels at decode shapes: the heads of one
// thread (6 of bench-v3-mini's 12) over a latent cache of 4096 rows of 256 floats (one layer
// at depth 4096). Bytes/s counts one read of the cache, the figure a decode step streams.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"

namespace dsv3 {
namespace {

std::vector<float> Random(int64_t n) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Args: kernel, queries M, cached rows S, width C.
void BM_MultiQueryScores(benchmark::State& state) {
  const auto kernel = static_cast<LinearKernel>(state.range(0));
  const int64_t M = state.range(1), S = state.range(2), C = state.range(3);
  if (kernel == LinearKernel::kAvx2 && !GetCpuFeatures().HasAvx2Set()) {
    state.SkipWithError("CPU lacks AVX2");
    return;
  }
  SetLinearKernel(kernel);
  const auto q = Random(M * C), keys = Random(S * C);
  std::vector<float> scores(static_cast<size_t>(M * S));
  for (auto _ : state) {
    MultiQueryScores(q.data(), M, C, keys.data(), S, C, scores.data(), S, false);
    benchmark::DoNotOptimize(scores.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  state.SetLabel(LinearKernelName(kernel));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * S * C * 4);
  state.counters["FLOPS"] = benchmark::Counter(double(2 * M * S * C) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_MultiQueryWeightedSum(benchmark::State& state) {
  const auto kernel = static_cast<LinearKernel>(state.range(0));
  const int64_t M = state.range(1), S = state.range(2), C = state.range(3);
  if (kernel == LinearKernel::kAvx2 && !GetCpuFeatures().HasAvx2Set()) {
    state.SkipWithError("CPU lacks AVX2");
    return;
  }
  SetLinearKernel(kernel);
  const auto p = Random(M * S), vals = Random(S * C);
  std::vector<float> out(static_cast<size_t>(M * C));
  for (auto _ : state) {
    MultiQueryWeightedSum(p.data(), M, S, vals.data(), S, C, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  state.SetLabel(LinearKernelName(kernel));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * S * C * 4);
  state.counters["FLOPS"] = benchmark::Counter(double(2 * M * S * C) * state.iterations(), benchmark::Counter::kIsRate);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int k : {static_cast<int>(LinearKernel::kReference), static_cast<int>(LinearKernel::kAvx2)})
    b->Args({k, 6, 4096, 256});
}
BENCHMARK(BM_MultiQueryScores)->Apply(Args)->UseRealTime()->MinTime(0.2);
BENCHMARK(BM_MultiQueryWeightedSum)->Apply(Args)->UseRealTime()->MinTime(0.2);

}  // namespace
}  // namespace dsv3
