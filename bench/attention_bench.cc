// Microbenchmarks of the attention kernels. The multi-query kernels at decode shapes: the heads of one
// thread (6 of bench-v3-mini's 12) over a latent cache of 4096 rows of 256 floats (one layer
// at depth 4096). Bytes/s counts one read of the cache, the figure a decode step streams.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/base/dtype.h"
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

// Args: op (0 scores, 1 weighted sum), kernel, queries M, cached rows S, width C. Both ops
// read the S x C cache once and do 2·M·S·C FLOPs.
void BM_MultiQuery(benchmark::State& state) {
  const bool weighted_sum = state.range(0) == 1;
  const auto kernel = static_cast<LinearKernel>(state.range(1));
  const int64_t M = state.range(2), S = state.range(3), C = state.range(4);
  if (kernel == LinearKernel::kAvx2 && !GetCpuFeatures().HasAvx2Set()) {
    state.SkipWithError("CPU lacks AVX2");
    return;
  }
  if (kernel == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) {
    state.SkipWithError("CPU lacks AVX-512");
    return;
  }
  SetLinearKernel(kernel);
  const auto queries = Random(M * (weighted_sum ? S : C)), cache = Random(S * C);
  std::vector<float> out(static_cast<size_t>(M * (weighted_sum ? C : S)));
  for (auto _ : state) {
    if (weighted_sum) {
      MultiQueryWeightedSum(queries.data(), M, S, cache.data(), S, C, out.data());
    } else {
      MultiQueryScores(queries.data(), M, C, cache.data(), S, C, out.data(), S, false);
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  state.SetLabel(std::string(weighted_sum ? "weighted sum " : "scores ") + LinearKernelName(kernel));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * S * C * 4);
  state.counters["FLOPS"] = benchmark::Counter(double(2 * M * S * C) * state.iterations(), benchmark::Counter::kIsRate);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int op : {0, 1})
    for (int k : {static_cast<int>(LinearKernel::kReference), static_cast<int>(LinearKernel::kAvx2),
                  static_cast<int>(LinearKernel::kAvx512)}) {
      b->Args({op, k, 6, 4096, 256});
      b->Args({op, k, 12, 128, 256});  // one decode span of bench-v3-mini: 12 heads, 128 positions
      b->Args({op, k, 12, 128, 32});   // its rope part
      b->Args({op, k, 128, 2048, 512});  // DeepSeek-V3's 128 heads over one of 16 spans at 32K context
    }
}
BENCHMARK(BM_MultiQuery)->Apply(Args)->UseRealTime()->MinTime(0.2);

// One thread's decode attention over bench-v3-mini's caches at depth 4096, as the engine walks
// them: 12 layers, each a 4096 x 256 latent cache and a 4096 x 32 rope cache (57 MB in all, so
// read from DRAM), in spans of 128 positions with all 12 heads stacked: two-part scores, the
// softmax exponentials, the weighted sum. Arg: 1 for the two-part scores, 0 for the latent and
// rope parts as two products, 2 for the two-part scores over a bf16 cache (--kv-cache-dtype
// bf16: the same values rounded, half the bytes), 3 for those with the queries rounded to bf16
// too (--activations bf16: vdpbf16ps, where the CPU has AVX-512 BF16); second arg, the kernel
// family. One iteration is one token's attention.
void BM_DecodeSpans(benchmark::State& state) {
  const int64_t form = state.range(0);
  const auto kernel = static_cast<LinearKernel>(state.range(1));
  if (!GetCpuFeatures().HasAvx2Set() || (kernel == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) ||
      (form == 3 && !GetCpuFeatures().HasAvx512Bf16Set())) {
    state.SkipWithError("CPU lacks the kernel's instructions");
    return;
  }
  SetLinearKernel(kernel);
  if (form == 3) SetLinearActivations(LinearActivations::kBf16);
  constexpr int64_t kLayers = 12, kDepth = 4096, C = 256, R = 32, H = 12, kSpan = 128;
  const auto latents = Random(kLayers * kDepth * C), rope = Random(kLayers * kDepth * R), q = Random(H * (C + R));
  std::vector<uint16_t> bf16_latents, bf16_rope;
  if (form >= 2) {
    for (float v : latents) bf16_latents.push_back(F32ToBF16(v));
    for (float v : rope) bf16_rope.push_back(F32ToBF16(v));
  }
  std::vector<float> scores(static_cast<size_t>(H * kSpan)), out(static_cast<size_t>(H * C));
  const auto span = [&](const auto* lat, const auto* pe) {
    constexpr bool kFloat = std::is_same_v<decltype(lat), const float*>;  // form 0 or 1
    if constexpr (kFloat) {
      if (form == 0) {
        MultiQueryScores(q.data(), H, C, lat, kSpan, C, scores.data(), kSpan, false);
        MultiQueryScores(q.data() + H * C, H, R, pe, kSpan, R, scores.data(), kSpan, true);
      }
    }
    if (form != 0)
      MultiQueryScoresTwoPart(q.data(), C, lat, C, q.data() + H * C, R, pe, R, H, kSpan, scores.data(), kSpan);
    for (int64_t h = 0; h < H; ++h) ExpShiftedSum(scores.data() + h * kSpan, kSpan, 0.0f);
    MultiQueryWeightedSum(scores.data(), H, kSpan, lat, kSpan, C, out.data());
  };
  for (auto _ : state) {
    for (int64_t l = 0; l < kLayers; ++l) {
      for (int64_t a = 0; a < kDepth; a += kSpan) {
        const int64_t at = l * kDepth + a;
        if (form >= 2) {
          span(bf16_latents.data() + at * C, bf16_rope.data() + at * R);
        } else {
          span(latents.data() + at * C, rope.data() + at * R);
        }
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  SetLinearActivations(LinearActivations::kInt8);
  state.SetLabel(std::string(form == 0   ? "latent and rope scores apart "
                             : form == 1 ? "two-part scores "
                             : form == 2 ? "two-part scores, bf16 "
                                         : "two-part scores, bf16, bf16 queries ") +
                 LinearKernelName(kernel));
  const int64_t value_bytes = form >= 2 ? 2 : 4;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kLayers * kDepth * (C + R) * value_bytes);
}
void DecodeSpansArgs(benchmark::internal::Benchmark* b) {
  for (int k : {static_cast<int>(LinearKernel::kAvx2), static_cast<int>(LinearKernel::kAvx512)})
    for (int form : {0, 1, 2, 3})
      if (form < 3 || k == static_cast<int>(LinearKernel::kAvx512)) b->Args({form, k});
}
BENCHMARK(BM_DecodeSpans)->Apply(DecodeSpansArgs)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

// One decode span of DeepSeek-V3 over a bf16 cache, one thread: its 128 heads stacked over 2048
// cached rows (one of 16 spans at 32K context) of 512 latent and 64 rope values, the two-part
// scores and the weighted sum. Arg: 2, float32 queries and probabilities (the widened rows'
// bits: the GEMM takes the scores of 16 or more queries); 3, both rounded to bf16
// (--activations bf16, AVX-512 BF16).
void BM_DeepSeekSpan(benchmark::State& state) {
  const int64_t form = state.range(0);
  if (!GetCpuFeatures().HasAvx512VnniSet() || (form == 3 && !GetCpuFeatures().HasAvx512Bf16Set())) {
    state.SkipWithError("CPU lacks the kernel's instructions");
    return;
  }
  constexpr int64_t H = 128, S = 2048, C = 512, R = 64;
  const auto q = Random(H * (C + R)), p = Random(H * S);
  std::vector<uint16_t> latents, rope;
  for (float v : Random(S * C)) latents.push_back(F32ToBF16(v));
  for (float v : Random(S * R)) rope.push_back(F32ToBF16(v));
  std::vector<float> scores(static_cast<size_t>(H * S)), out(static_cast<size_t>(H * C));
  if (form == 3) SetLinearActivations(LinearActivations::kBf16);
  for (auto _ : state) {
    MultiQueryScoresTwoPart(q.data(), C, latents.data(), C, q.data() + H * C, R, rope.data(), R, H, S, scores.data(), S);
    MultiQueryWeightedSum(p.data(), H, S, latents.data(), S, C, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetLinearActivations(LinearActivations::kInt8);
  state.SetLabel(form == 3 ? "bf16 queries and probabilities" : "float32 queries and probabilities");
  state.counters["FLOPS"] =
      benchmark::Counter(static_cast<double>(2 * H * S * (2 * C + R)) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DeepSeekSpan)->Arg(2)->Arg(3)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

// Prefill attention's MatMul products for one head of bench-v3-mini, a 256-token chunk at
// depth 4096 (S = 4352 cached positions): keys and values from 96 latent rows at a time
// (96 x 256 · 256 x 64), one block of 12 query rows' scores (12 x 96 · 96 x S), and its
// weighted sum (12 x S · S x 64). Args: kernel, M, K, N, with B packed once outside the loop.
void BM_MatMul(benchmark::State& state) {
  const auto kernel = static_cast<LinearKernel>(state.range(0));
  const int64_t M = state.range(1), K = state.range(2), N = state.range(3);
  if (kernel == LinearKernel::kAvx2 && !GetCpuFeatures().HasAvx2Set()) {
    state.SkipWithError("CPU lacks AVX2");
    return;
  }
  if (kernel == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) {
    state.SkipWithError("CPU lacks AVX-512");
    return;
  }
  SetLinearKernel(kernel);
  const auto a = Random(M * K), b = Random(K * N);
  MatMulRhs packed;
  PackMatMulRhs(b.data(), K, N, N, /*transposed=*/false, &packed);
  std::vector<float> c(static_cast<size_t>(M * N));
  for (auto _ : state) {
    MatMul(a.data(), M, K, K, packed, N, c.data(), N);
    benchmark::DoNotOptimize(c.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  state.SetLabel(LinearKernelName(kernel));
  state.counters["FLOPS"] = benchmark::Counter(double(2 * M * K * N) * state.iterations(), benchmark::Counter::kIsRate);
}
void MatMulArgs(benchmark::internal::Benchmark* b) {
  for (int k : {static_cast<int>(LinearKernel::kReference), static_cast<int>(LinearKernel::kAvx2),
                static_cast<int>(LinearKernel::kAvx512)}) {
    b->Args({k, 96, 256, 64});
    b->Args({k, 12, 96, 4352});
    b->Args({k, 12, 4352, 64});
  }
}
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->UseRealTime()->MinTime(0.2);

}  // namespace
}  // namespace dsv3
