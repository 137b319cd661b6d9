// Microbenchmarks of the Linear kernels: each weight format through each kernel family this
// CPU runs, at decode shapes (one token: memory-bound, bytes/s is the figure) and prefill
// shapes (many tokens: compute-bound, FLOP/s is the figure). Families the CPU lacks are skipped.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/base/huge_page_buffer.h"
#include "engine/base/threads.h"
#include "engine/io/safetensors.h"
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
  std::vector<uint8_t> zero;  // INT4 with zero points
  WeightMatrix w;
};

// Pseudo-dtypes of the benchmark arguments for the integer formats `dsv3 quantize` writes:
// INT8 per channel, INT4 g32 symmetric (llama.cpp's Q4_0 layout) and INT4 g64 with zero points
// (its default).
constexpr int kInt8PerChannel = 100, kInt4Group32 = 101, kInt4Group64Zero = 102;

// A benchmark argument's format as its labels name it.
std::string FormatName(int format) {
  if (format == kInt8PerChannel) return "int8";
  if (format == kInt4Group32) return "int4-g32";
  if (format == kInt4Group64Zero) return "int4-g64z";
  return DTypeName(static_cast<DType>(format));
}

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
    const int64_t group = format == kInt4Group32 ? 32 : 64, groups = (cols + group - 1) / group;
    Int4Groups q = QuantizeInt4(w.data(), rows, cols, group, format == kInt4Group32, "bench").value();
    f.bytes = q.packed;
    f.scale16 = q.scale;
    f.zero = q.zero;
    f.w.w = TensorView{f.bytes.data(), DType::kU8, Shape{rows, (cols + 1) / 2}};
    f.w.scale = TensorView{f.scale16.data(), DType::kF16, Shape{rows, groups}};
    if (!f.zero.empty()) f.w.zero = TensorView{f.zero.data(), DType::kU8, Shape{rows, groups}};
    f.w.in_features = cols;
    f.w.block_out = 1;
    f.w.block_in = group;
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

// The bytes of a fixture's matrix: its weights and scales.
int64_t MatrixBytes(const Fixture& f) {
  return static_cast<int64_t>(f.bytes.size() + f.scale.size() * sizeof(float) + f.scale16.size() * sizeof(uint16_t) +
                              f.zero.size());
}

// Matrices laid out as dsv3 maps a checkpoint's weights: on 2 MiB pages, each weight and scale
// tensor on a 64-byte line. The fixtures' own vectors come from malloc, on 4 KiB pages here
// (THP "madvise"), and streamed from there an INT4 lm_head (2 threads, Zen 5) had read at
// 16-31 GB/s against 47-54 for the same rows on 2 MiB pages: the benchmarks measured the
// pages more than the kernels.
struct MappedWeights {
  HugePageBuffer memory;
  std::vector<WeightMatrix> w;  // copy c of fixture i at [c * fixtures + i]
};

// `copies` copies of each of the fixtures' matrices, one after another (c0 f0, c0 f1, c1 f0, ...).
MappedWeights OnHugePages(const std::vector<const Fixture*>& fixtures, int64_t copies) {
  constexpr size_t kLine = SafetensorsWriter::kDataAlignment;  // where the writer puts tensors
  const auto line = [](size_t n) { return (n + kLine - 1) / kLine * kLine; };
  size_t total = 0;
  for (const Fixture* f : fixtures)
    total += line(f->bytes.size()) + line(f->scale.size() * sizeof(float)) + line(f->scale16.size() * sizeof(uint16_t)) +
             line(f->zero.size());
  MappedWeights m{HugePageBuffer(total * static_cast<size_t>(copies)), {}};
  auto* at = static_cast<uint8_t*>(m.memory.data());
  const auto place = [&](const void* src, size_t n) {
    void* dst = at;
    if (n > 0) std::memcpy(dst, src, n);
    at += line(n);
    return dst;
  };
  for (int64_t c = 0; c < copies; ++c) {
    for (const Fixture* f : fixtures) {
      WeightMatrix w = f->w;
      w.w.data = place(f->bytes.data(), f->bytes.size());
      void* scale = place(f->scale.data(), f->scale.size() * sizeof(float));
      void* scale16 = place(f->scale16.data(), f->scale16.size() * sizeof(uint16_t));
      if (!f->scale.empty()) (f->w.scale.data == f->scale.data() ? w.scale : w.scale_inv).data = scale;
      void* zero = place(f->zero.data(), f->zero.size());
      if (!f->scale16.empty()) w.scale.data = scale16;
      if (!f->zero.empty()) w.zero.data = zero;
      m.w.push_back(w);
    }
  }
  return m;
}

// Skips the benchmark, saying why, where the CPU lacks what `kernel` and `activations` need
// (kAuto: the AVX2 set the engine's fast paths run on); true when it did.
bool SkipIfCpuLacks(benchmark::State& state, LinearKernel kernel,
                    LinearActivations activations = LinearActivations::kInt8) {
  const CpuFeatures& f = GetCpuFeatures();
  const char* lacks = nullptr;
  if (kernel != LinearKernel::kReference && !f.HasAvx2Set()) {
    lacks = "CPU lacks AVX2";
  } else if (kernel == LinearKernel::kAvx512 && !f.HasAvx512VnniSet()) {
    lacks = "CPU lacks AVX-512 VNNI";
  } else if (activations == LinearActivations::kBf16 && !f.HasAvx512Bf16Set()) {
    lacks = "CPU lacks AVX-512 BF16";
  }
  if (lacks != nullptr) state.SkipWithError(lacks);
  return lacks != nullptr;
}

// Args: dtype, kernel, rows, cols, tokens, threads, activations (LinearActivations; the
// integer formats run int8 and f32, BF16 and FP8 under avx512 also bf16).
void BM_Linear(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const auto kernel = static_cast<LinearKernel>(state.range(1));
  const int64_t rows = state.range(2), cols = state.range(3), T = state.range(4);
  const auto activations = static_cast<LinearActivations>(state.range(6));
  if (SkipIfCpuLacks(state, kernel, activations)) return;
  SetNumThreads(static_cast<int>(state.range(5)));
  SetLinearKernel(kernel);
  SetLinearActivations(activations);
  Fixture f = Make(format, rows, cols, T);
  const MappedWeights mapped = OnHugePages({&f}, 1);
  for (auto _ : state) {
    Linear(f.x.data(), T, mapped.w[0], f.y.data());
    benchmark::DoNotOptimize(f.y.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  SetLinearActivations(LinearActivations::kInt8);
  const bool named = format >= kInt8PerChannel || activations == LinearActivations::kBf16;
  state.SetLabel(FormatName(format) + " " + LinearKernelName(kernel) +
                 (named ? std::string(" x") + LinearActivationsName(activations) : std::string()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(f.bytes.size()));
  state.counters["FLOPS"] = benchmark::Counter(static_cast<double>(2 * T * rows * cols) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}

void LinearArgs(benchmark::internal::Benchmark* b) {
  for (int dt : {static_cast<int>(DType::kBF16), static_cast<int>(DType::kF8E4M3), static_cast<int>(DType::kF32),
                 kInt8PerChannel, kInt4Group32}) {
    for (int k : {static_cast<int>(LinearKernel::kReference), static_cast<int>(LinearKernel::kAvx2),
                  static_cast<int>(LinearKernel::kAvx512)}) {
      for (int a : {static_cast<int>(LinearActivations::kInt8), static_cast<int>(LinearActivations::kF32),
                    static_cast<int>(LinearActivations::kBf16)}) {
        if (a == static_cast<int>(LinearActivations::kF32) && dt < kInt8PerChannel) continue;
        if (a == static_cast<int>(LinearActivations::kBf16) &&
            ((dt != static_cast<int>(DType::kBF16) && dt != static_cast<int>(DType::kF8E4M3)) ||
             k != static_cast<int>(LinearKernel::kAvx512)))
          continue;
        for (int threads : {1, 2}) {
          b->Args({dt, k, 512, 1536, 1, threads, a});     // one routed expert's gate, decode
          b->Args({dt, k, 1536, 512, 1, threads, a});     // and its down (short K), decode
          b->Args({dt, k, 1536, 512, 2, threads, a});     // the down of an expert two or three
          b->Args({dt, k, 1536, 512, 3, threads, a});     // sequences of a batch picked
          b->Args({dt, k, 1152, 384, 1, threads, a});     // q_b_proj-sized (K a step and a tail), decode
          b->Args({dt, k, 1536, 768, 1, threads, a});     // o_proj-sized (K = 768), decode
          // L2-resident: the kernel's arithmetic, and what every call pays besides (int8 activations
          // quantized, rows dealt to threads): for INT4 on Zen 3, a sixth of this case's time.
          b->Args({dt, k, 64, 1536, 1, threads, a});
          b->Args({dt, k, 16384, 1536, 1, threads, a});   // an eighth of the lm_head, decode
          b->Args({dt, k, 129280, 1536, 1, threads, a});  // the whole lm_head: far beyond the caches
          b->Args({dt, k, 16384, 1536, 8, threads, a});   // eight sequences decoding together (and four)
          b->Args({dt, k, 16384, 1536, 4, threads, a});
          b->Args({dt, k, 1536, 1536, 128, threads, a});  // o_proj-sized, prefill
          b->Args({dt, k, 1152, 384, 128, threads, a});   // q_b_proj-sized (short K), prefill
          b->Args({dt, k, 512, 16384, 64, threads, a});   // DeepSeek-V3's o_proj depth (deep K), prefill
        }
      }
    }
  }
}
BENCHMARK(BM_Linear)->Apply(LinearArgs)->UseRealTime()->MinTime(0.2);

// Args: dtype (as BM_Linear), tokens, threads, activations[, down]. A MoE layer's routed-expert
// matrices (512 x 1536, as bench-v3-mini's gate and up projections; down 1: 1536 x 512, its down
// projections, whose short rows stream differently), each at its own address and together
// over 64 MB, so every pass reads them from DRAM as a decoding or prefilling model does: the
// figure includes what a matrix-sized stream costs at its start and its end, which BM_Linear's
// one cache-resident or lm_head-sized matrix does not show. tokens: 1 (decode) or ~48 (the
// tokens each of 64 experts gets from a 512-token prefill with 6 experts per token); with the
// activations the engine gives each (int8 in decode steps; in prefill float32, or int8 under
// --activations int8-all; BF16 and FP8 also under --activations bf16).
void BM_ExpertStream(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const bool down = state.range(4) != 0;
  const int64_t rows = down ? 1536 : 512, cols = down ? 512 : 1536, T = state.range(1);
  const auto activations = static_cast<LinearActivations>(state.range(3));
  if (SkipIfCpuLacks(state, LinearKernel::kAuto, activations)) return;
  SetNumThreads(static_cast<int>(state.range(2)));
  SetLinearActivations(activations);
  Fixture one = Make(format, rows, cols, T);  // its activations and outputs serve every expert
  const int64_t matrix_bytes = MatrixBytes(one);
  const int64_t experts = ((int64_t{64} << 20) + matrix_bytes - 1) / matrix_bytes;
  const MappedWeights copies = OnHugePages({&one}, experts);
  for (auto _ : state) {
    for (const WeightMatrix& w : copies.w) Linear(one.x.data(), T, w, one.y.data());
    benchmark::DoNotOptimize(one.y.data());
  }
  SetLinearActivations(LinearActivations::kInt8);
  const bool named = format >= kInt8PerChannel || activations == LinearActivations::kBf16;
  state.SetLabel(FormatName(format) + (named ? std::string(" x") + LinearActivationsName(activations) : std::string()) +
                (down ? " down" : ""));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * experts * matrix_bytes);
  state.counters["FLOPS"] = benchmark::Counter(static_cast<double>(2 * T * rows * cols * experts) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}

void ExpertArgs(benchmark::internal::Benchmark* b) {
  for (int dt : {static_cast<int>(DType::kBF16), static_cast<int>(DType::kF8E4M3), kInt8PerChannel, kInt4Group32})
    for (int64_t T : {1, 48}) {
      b->Args({dt, T, 2, static_cast<int>(T == 1 ? LinearActivations::kInt8 : LinearActivations::kF32), 0});
      if (T == 1) b->Args({dt, T, 2, static_cast<int>(LinearActivations::kInt8), 1});
      if (T > 1 && dt >= kInt8PerChannel) b->Args({dt, T, 2, static_cast<int>(LinearActivations::kInt8), 0});
      if (dt == static_cast<int>(DType::kBF16) || dt == static_cast<int>(DType::kF8E4M3))
        b->Args({dt, T, 2, static_cast<int>(LinearActivations::kBf16), 0});
    }
}
BENCHMARK(BM_ExpertStream)->Apply(ExpertArgs)->UseRealTime()->MinTime(0.5);

// Args: dtype (as BM_Linear). One MoE layer's decode step as MoeForward runs it, over
// bench-v3-mini's 8 active experts (2 shared, 6 routed: gate and up 512 x 1536, down 1536 x
// 512), 2 threads, int8 activations: every expert's gate and up in one LinearJobs region, SiLU,
// each expert's hidden row prepared, then the down projections in a second region. Each step's
// experts are drawn at random from a pool of over 512 MB (each expert's gate, up and down one
// after another, as a checkpoint stores them), so every step reads them from DRAM at scattered
// addresses as decode does. (Drawn at random, a pool finds earlier steps' experts in L3 in
// proportion to the share of it L3 holds: from 64 MB, INT4 read 50.5 GB/s where the engine's
// MoE reads ~45, and 43-44 from 128 MB up, interleaved in one run on Zen 5.) bytes/s against
// BM_ReadBandwidth/2 and the lm_head's one long stream (BM_Linear/.../129280/1536/1/2) is the
// MoE's share of the decode roofline.
void BM_MoeDecodeStep(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  if (SkipIfCpuLacks(state, LinearKernel::kAuto)) return;
  constexpr int64_t kPicked = 8, kI = 512, kD = 1536, kMinRowPiece = 64;  // MoeForward's kRowBlock
  SetNumThreads(2);
  const Fixture gate = Make(format, kI, kD, 1), up = Make(format, kI, kD, 1), down = Make(format, kD, kI, 1);
  const int64_t expert_bytes = MatrixBytes(gate) + MatrixBytes(up) + MatrixBytes(down);
  const int64_t experts = std::max<int64_t>(4 * kPicked, ((int64_t{512} << 20) + expert_bytes - 1) / expert_bytes);
  const MappedWeights mapped = OnHugePages({&gate, &up, &down}, experts);  // expert e: [3e, 3e + 2]
  std::mt19937 rng(7);
  std::vector<size_t> order(static_cast<size_t>(experts));
  for (size_t e = 0; e < order.size(); ++e) order[e] = e;
  std::vector<float> gate_out(kPicked * kI), up_out(kPicked * kI), down_out(kPicked * kD);
  LinearInput x_in;
  x_in.Prepare(gate.x.data(), 1, mapped.w[0], LinearActivations::kInt8);
  std::vector<LinearInput> hidden(kPicked);
  std::vector<LinearJob> jobs;
  for (auto _ : state) {
    state.PauseTiming();
    std::shuffle(order.begin(), order.end(), rng);  // this step's experts: order[0 .. kPicked)
    state.ResumeTiming();
    const auto w = [&](int64_t i, size_t m) -> const WeightMatrix& { return mapped.w[3 * order[static_cast<size_t>(i)] + m]; };
    jobs.clear();
    for (int64_t i = 0; i < kPicked; ++i) {
      jobs.push_back({&x_in, &w(i, 0), gate_out.data() + i * kI});
      jobs.push_back({&x_in, &w(i, 1), up_out.data() + i * kI});
    }
    LinearJobs(jobs, kMinRowPiece);
    SiluMul(gate_out.data(), up_out.data(), kPicked * kI);
    ParallelFor(kPicked, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        hidden[static_cast<size_t>(i)].Prepare(gate_out.data() + i * kI, 1, w(i, 2), LinearActivations::kInt8);
    });
    jobs.clear();
    for (int64_t i = 0; i < kPicked; ++i) jobs.push_back({&hidden[static_cast<size_t>(i)], &w(i, 2), down_out.data() + i * kD});
    LinearJobs(jobs, kMinRowPiece);
    benchmark::DoNotOptimize(down_out.data());
  }
  state.SetLabel(FormatName(format));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kPicked * expert_bytes);
}
BENCHMARK(BM_MoeDecodeStep)
    ->Arg(static_cast<int>(DType::kBF16))
    ->Arg(static_cast<int>(DType::kF8E4M3))
    ->Arg(kInt8PerChannel)
    ->Arg(kInt4Group32)
    ->Arg(kInt4Group64Zero)
    ->UseRealTime()
    ->MinTime(0.5);

// Args: dtype (as BM_Linear), activations. One MoE layer's routed experts in a 512-token
// prefill as MoeForward runs them: 64 experts (gate and up 512 x 1536, down 1536 x 512, each
// expert's three one after another as a checkpoint stores them), 48 tokens each (512 tokens x 6
// picks / 64), 2 threads: every expert's gate and up in one LinearJobs region, then the downs
// in a second. The inputs are prepared once, outside the timing (the engine quantizes a step's
// tokens once, PrepareQuantizedOnce), so the figure is the expert GEMMs' alone, where
// BM_ExpertStream's one Linear per expert also quantizes its 48 tokens on one thread each call.
// The 64 experts (85 MB at INT4 g32) come from DRAM each pass, as a prefill's layers do.
void BM_MoePrefillStep(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const auto activations = static_cast<LinearActivations>(state.range(1));
  if (SkipIfCpuLacks(state, LinearKernel::kAuto, activations)) return;
  constexpr int64_t kExperts = 64, kTokens = 48, kI = 512, kD = 1536, kMinRowPiece = 64;  // MoeForward's kRowBlock
  SetNumThreads(2);
  SetLinearActivations(activations);
  const Fixture gate = Make(format, kI, kD, kTokens), up = Make(format, kI, kD, kTokens),
                down = Make(format, kD, kI, kTokens);
  const MappedWeights mapped = OnHugePages({&gate, &up, &down}, kExperts);  // expert e: [3e, 3e + 2]
  std::vector<float> gate_out(kExperts * kTokens * kI), up_out(kExperts * kTokens * kI),
      down_out(kExperts * kTokens * kD);
  std::vector<LinearInput> x_in(kExperts), hidden(kExperts);
  for (int64_t e = 0; e < kExperts; ++e) {
    x_in[static_cast<size_t>(e)].Prepare(gate.x.data(), kTokens, mapped.w[static_cast<size_t>(3 * e)], activations);
    hidden[static_cast<size_t>(e)].Prepare(down.x.data(), kTokens, mapped.w[static_cast<size_t>(3 * e + 2)], activations);
  }
  std::vector<LinearJob> gate_up, downs;
  for (int64_t e = 0; e < kExperts; ++e) {
    const auto i = static_cast<size_t>(e);
    gate_up.push_back({&x_in[i], &mapped.w[3 * i], gate_out.data() + e * kTokens * kI});
    gate_up.push_back({&x_in[i], &mapped.w[3 * i + 1], up_out.data() + e * kTokens * kI});
    downs.push_back({&hidden[i], &mapped.w[3 * i + 2], down_out.data() + e * kTokens * kD});
  }
  for (auto _ : state) {
    LinearJobs(gate_up, kMinRowPiece);
    LinearJobs(downs, kMinRowPiece);
    benchmark::DoNotOptimize(down_out.data());
  }
  SetLinearActivations(LinearActivations::kInt8);
  state.SetLabel(FormatName(format) + " x" + LinearActivationsName(activations));
  state.counters["FLOPS"] = benchmark::Counter(static_cast<double>(2 * kTokens * 3 * kI * kD * kExperts) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MoePrefillStep)
    ->Args({kInt8PerChannel, static_cast<int>(LinearActivations::kInt8All)})
    ->Args({kInt4Group32, static_cast<int>(LinearActivations::kInt8All)})
    ->Args({kInt4Group64Zero, static_cast<int>(LinearActivations::kInt8All)})
    ->Args({static_cast<int>(DType::kBF16), static_cast<int>(LinearActivations::kBf16)})
    ->Args({static_cast<int>(DType::kBF16), static_cast<int>(LinearActivations::kF32)})
    ->Args({static_cast<int>(DType::kF8E4M3), static_cast<int>(LinearActivations::kBf16)})
    ->Args({static_cast<int>(DType::kF8E4M3), static_cast<int>(LinearActivations::kF32)})
    ->UseRealTime()
    ->MinTime(0.5);

// Args: dtype (as BM_Linear), fused. The two products of one input MLA starts with (q_a,
// 384 x 1536, and kv_a, 288 x 1536, as bench-v3-mini's), one pair per layer at its own
// addresses, over 64 MB in all so each pass reads them from DRAM as a decode step does: two
// Linear calls (fused 0) against one LinearSameInput (fused 1), one token, two threads,
// int8 activations where the format takes them.
void BM_SameInput(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const bool fused = state.range(1) != 0;
  if (SkipIfCpuLacks(state, LinearKernel::kAuto)) return;
  SetNumThreads(2);
  const Fixture q_a = Make(format, 384, 1536, 1), kv_a = Make(format, 288, 1536, 1);
  const int64_t pair = MatrixBytes(q_a) + MatrixBytes(kv_a);
  const int64_t layers = ((int64_t{64} << 20) + pair - 1) / pair, bytes = layers * pair;
  const MappedWeights mapped = OnHugePages({&q_a, &kv_a}, layers);  // each layer's q_a, then its kv_a
  const std::vector<float>& x = q_a.x;
  std::vector<float> y_q(384), y_kv(288);
  for (auto _ : state) {
    for (int64_t l = 0; l < layers; ++l) {
      const WeightMatrix &wq = mapped.w[static_cast<size_t>(2 * l)], &wkv = mapped.w[static_cast<size_t>(2 * l + 1)];
      if (fused) {
        LinearSameInput(x.data(), 1, {{&wq, y_q.data()}, {&wkv, y_kv.data()}});
      } else {
        Linear(x.data(), 1, wq, y_q.data());
        Linear(x.data(), 1, wkv, y_kv.data());
      }
    }
    benchmark::DoNotOptimize(y_q.data());
    benchmark::DoNotOptimize(y_kv.data());
  }
  state.SetLabel(FormatName(format) + (fused ? " LinearSameInput" : " two Linear"));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
}
BENCHMARK(BM_SameInput)
    ->Args({static_cast<int>(DType::kBF16), 0})
    ->Args({static_cast<int>(DType::kBF16), 1})
    ->Args({kInt4Group32, 0})
    ->Args({kInt4Group32, 1})
    ->UseRealTime()
    ->MinTime(0.5);

// Args: dtype (as BM_Linear), kernel, queries. Decode's absorbed attention over one layer's kv_b as
// stored (bench-v3-mini: 12 heads x (64 W_uk + 64 W_uv rows) x 256): per head, the query's
// weighted sum of the W_uk rows and the W_uv rows' scores against the merged latent. The
// 1536 x 256 matrix stays in L2/L3 here; in a decode step it comes from DRAM.
void BM_WeightRows(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const auto kernel = static_cast<LinearKernel>(state.range(1));
  const int64_t M = state.range(2);  // queries: the sequences of a decode batch
  if (SkipIfCpuLacks(state, kernel)) return;
  constexpr int64_t kHeads = 12, kNope = 64, kV = 64, kC = 256;
  SetLinearKernel(kernel);
  Fixture f = Make(format, kHeads * (kNope + kV), kC, 1);
  std::vector<float> q(M * kNope, 0.01f), latent(M * kC, 0.01f), absorbed(M * kC), out(M * kV);
  for (auto _ : state) {
    for (int64_t h = 0; h < kHeads; ++h) {
      WeightRowsWeightedSum(q.data(), M, kNope, f.w, h * (kNope + kV), kNope, absorbed.data(), kC);
      WeightRowScores(latent.data(), M, kC, f.w, h * (kNope + kV) + kNope, kV, out.data(), kV);
    }
    benchmark::DoNotOptimize(absorbed.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetLinearKernel(LinearKernel::kAuto);
  state.SetLabel(FormatName(format) + " " + LinearKernelName(kernel));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(f.bytes.size()));
}

// Args: dtype, kernel, queries (1, or a batch of 8 sequences in one call).
void WeightRowsArgs(benchmark::internal::Benchmark* b) {
  for (int dt : {static_cast<int>(DType::kBF16), static_cast<int>(DType::kF8E4M3), kInt8PerChannel, kInt4Group32})
    for (int k : {static_cast<int>(LinearKernel::kReference), static_cast<int>(LinearKernel::kAvx2),
                  static_cast<int>(LinearKernel::kAvx512)})
      for (int m : {1, 8}) b->Args({dt, k, m});
}
BENCHMARK(BM_WeightRows)->Apply(WeightRowsArgs)->UseRealTime()->MinTime(0.2);

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
