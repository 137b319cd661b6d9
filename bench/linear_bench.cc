// Microbenchmarks of the Linear kernels: each weight format through each kernel family this
// CPU runs, at decode shapes (one token: memory-bound, bytes/s is the figure) and prefill
// shapes (many tokens: compute-bound, FLOP/s is the figure). Families the CPU lacks are skipped.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/machine_probe.h"
#include "engine/kernels/ops.h"
#include "engine/quant/int_quant.h"

namespace dsv3 {
namespace {

struct Fixture {
  std::vector<uint8_t> bytes;
  std::vector<float> scale, x, y;
  std::vector<uint16_t> scale16;
  WeightMatrix w;
};

// Pseudo-dtypes of the benchmark arguments for the integer formats `dsv3 quantize` writes.
constexpr int kInt8PerChannel = 100, kInt4Group32 = 101;

Fixture MakeInt(int format, int64_t rows, int64_t cols, int64_t T) {
  Fixture f;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = dist(rng);
  if (format == kInt8PerChannel) {
    Int8Block q = QuantizeInt8(w.data(), rows, cols, 1, cols, "bench").value();
    f.bytes.assign(q.q.begin(), q.q.end());
    f.scale = q.scale;
    f.w.w = TensorView{f.bytes.data(), DType::kI8, Shape{rows, cols}};
    f.w.scale = TensorView{f.scale.data(), DType::kF32, Shape{rows, 1}};
    f.w.block_out = 1;
    f.w.block_in = cols;
  } else {
    Int4Groups q = QuantizeInt4(w.data(), rows, cols, 32, true, "bench").value();
    f.bytes = q.packed;
    f.scale16 = q.scale;
    f.w.w = TensorView{f.bytes.data(), DType::kU8, Shape{rows, (cols + 1) / 2}};
    f.w.scale = TensorView{f.scale16.data(), DType::kF16, Shape{rows, (cols + 31) / 32}};
    f.w.in_features = cols;
    f.w.block_out = 1;
    f.w.block_in = 32;
  }
  f.x.resize(static_cast<size_t>(T * cols));
  for (float& v : f.x) v = dist(rng);
  f.y.resize(static_cast<size_t>(T * rows));
  return f;
}

Fixture Make(int format, int64_t rows, int64_t cols, int64_t T) {
  if (format >= kInt8PerChannel) return MakeInt(format, rows, cols, T);
  const auto dt = static_cast<DType>(format);
  Fixture f;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  f.bytes.resize(static_cast<size_t>(rows * cols) * DTypeSize(dt));
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = dist(rng);
    if (dt == DType::kBF16) reinterpret_cast<uint16_t*>(f.bytes.data())[i] = F32ToBF16(v);
    if (dt == DType::kF32) reinterpret_cast<float*>(f.bytes.data())[i] = v;
    if (dt == DType::kF8E4M3) f.bytes[static_cast<size_t>(i)] = F32ToE4M3(v * 1000.0f);
  }
  f.w.w = TensorView{f.bytes.data(), dt, Shape{rows, cols}};
  if (dt == DType::kF8E4M3) {
    const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    f.scale.assign(static_cast<size_t>(sr * sc), 1e-3f);
    f.w.scale_inv = TensorView{f.scale.data(), DType::kF32, Shape{sr, sc}};
  }
  f.x.resize(static_cast<size_t>(T * cols));
  for (float& v : f.x) v = dist(rng);
  f.y.resize(static_cast<size_t>(T * rows));
  return f;
}

// Args: dtype, kernel, rows, cols, tokens, threads, activations (LinearActivations; the
// integer formats run both).
void BM_Linear(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const auto kernel = static_cast<LinearKernel>(state.range(1));
  const int64_t rows = state.range(2), cols = state.range(3), T = state.range(4);
  if (kernel == LinearKernel::kAvx2 && !GetCpuFeatures().HasAvx2Set()) {
    state.SkipWithError("CPU lacks AVX2");
    return;
  }
  SetNumThreads(static_cast<int>(state.range(5)));
  SetLinearKernel(kernel);
  const auto activations = static_cast<LinearActivations>(state.range(6));
  SetLinearActivations(activations);
  Fixture f = Make(format, rows, cols, T);
  for (auto _ : state) {
    Linear(f.x.data(), T, f.w, f.y.data());
    benchmark::DoNotOptimize(f.y.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  SetLinearActivations(LinearActivations::kInt8);
  const bool integer = format >= kInt8PerChannel;
  const std::string name = format == kInt8PerChannel ? "int8"
                           : format == kInt4Group32  ? "int4-g32"
                                                     : DTypeName(static_cast<DType>(format));
  state.SetLabel(name + " " + LinearKernelName(kernel) +
                 (integer ? std::string(" x") + LinearActivationsName(activations) : std::string()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(f.bytes.size()));
  state.counters["FLOPS"] = benchmark::Counter(static_cast<double>(2 * T * rows * cols) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}

void LinearArgs(benchmark::internal::Benchmark* b) {
  for (int dt : {static_cast<int>(DType::kBF16), static_cast<int>(DType::kF8E4M3), static_cast<int>(DType::kF32),
                 kInt8PerChannel, kInt4Group32}) {
    for (int k : {static_cast<int>(LinearKernel::kReference), static_cast<int>(LinearKernel::kAvx2)}) {
      for (int a : {static_cast<int>(LinearActivations::kInt8), static_cast<int>(LinearActivations::kF32)}) {
        if (a == static_cast<int>(LinearActivations::kF32) && dt < kInt8PerChannel) continue;
        for (int threads : {1, 2}) {
          b->Args({dt, k, 512, 1536, 1, threads, a});     // one routed expert's gate, decode
          b->Args({dt, k, 64, 1536, 1, threads, a});      // L2-resident: the kernel's arithmetic alone
          b->Args({dt, k, 16384, 1536, 1, threads, a});   // an eighth of the lm_head, decode
          b->Args({dt, k, 129280, 1536, 1, threads, a});  // the whole lm_head: far beyond the caches
          b->Args({dt, k, 16384, 1536, 8, threads, a});   // eight sequences decoding together (and four)
          b->Args({dt, k, 16384, 1536, 4, threads, a});
          b->Args({dt, k, 1536, 1536, 128, threads, a});  // o_proj-sized, prefill
          b->Args({dt, k, 1152, 384, 128, threads, a});   // q_b_proj-sized (short K), prefill
        }
      }
    }
  }
}
BENCHMARK(BM_Linear)->Apply(LinearArgs)->UseRealTime()->MinTime(0.2);

void BM_ReadBandwidth(benchmark::State& state) {
  SetNumThreads(static_cast<int>(state.range(0)));
  double bw = 0;
  for (auto _ : state) bw = MeasureReadBandwidth(int64_t{256} << 20, 1);
  state.counters["GB/s"] = bw / 1e9;
}
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->Iterations(3)->UseRealTime();

void BM_FmaPeak(benchmark::State& state) {
  SetNumThreads(static_cast<int>(state.range(0)));
  double flops = 0;
  for (auto _ : state) flops = MeasurePeakFlops(0.1);
  state.counters["GFLOP/s"] = flops / 1e9;
}
BENCHMARK(BM_FmaPeak)->Arg(1)->Arg(2)->Iterations(3)->UseRealTime();

}  // namespace
}  // namespace dsv3
