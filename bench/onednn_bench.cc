// oneDNN's matmul (Debian's libdnnl, built when CMake finds it) on the shapes BM_ExpertStream
// runs dsv3's kernels on: 64 MB of 512 x 1536 expert matrices streamed from DRAM, one token
// (decode) or 48 (a 512-token prefill's share per expert), 2 threads (OpenMP, which Debian's
// build uses). The issue asked whether oneDNN's GEMMs should replace ours; these figures, next to
// BM_ExpertStream's, are the measurement. What they leave out in oneDNN's favour: its weights
// are reordered into its own blocked layout ahead of time (untimed; a second copy of every
// weight in a model, and f32 weights for its float32 path), and its int8 path scales each
// token once where dsv3 scales every block of 32 activations.
//
// matches_dsv3: the share of outputs bitwise equal to what dsv3's Linear gives for the same
// products (f32: BF16 weights as float32 against float32 activations, dsv3's exact path; bf16:
// BF16 weights against bf16 activations, --activations bf16). dsv3's prefill must give its
// decode's bits (one summation order, linear_kernels.h); oneDNN sums in its own order.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"

namespace dsv3 {
namespace {

using dnnl::memory;
using Dt = memory::data_type;
using Tag = memory::format_tag;

enum OneDnnKind : int { kF32 = 0, kBf16 = 1, kS8 = 2 };
const char* KindName(int kind) { return kind == kF32 ? "f32" : kind == kBf16 ? "bf16" : "u8 x s8"; }

// Outputs of dsv3's Linear bitwise equal to `theirs` for the same weights and activations.
double MatchesDsv3(int kind, const std::vector<float>& w_rounded, int64_t rows, int64_t cols, const std::vector<float>& x,
                   int64_t T, const std::vector<float>& theirs) {
  std::vector<uint16_t> bf16(w_rounded.size());
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = F32ToBF16(w_rounded[i]);
  WeightMatrix w;
  w.w = TensorView{bf16.data(), DType::kBF16, Shape{rows, cols}};
  SetLinearActivations(kind == kBf16 ? LinearActivations::kBf16 : LinearActivations::kF32);
  std::vector<float> ours(static_cast<size_t>(T * rows));
  Linear(x.data(), T, w, ours.data());
  SetLinearActivations(LinearActivations::kInt8);
  int64_t same = 0;
  for (size_t i = 0; i < ours.size(); ++i) same += std::memcmp(&ours[i], &theirs[i], sizeof(float)) == 0;
  return static_cast<double>(same) / static_cast<double>(ours.size());
}

// Args: kind (OneDnnKind), tokens.
void BM_OneDnnExpertStream(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  const int64_t rows = 512, cols = 1536, T = state.range(1);
  const CpuFeatures& f = GetCpuFeatures();
  if (kind == kBf16 && !f.HasAvx512Bf16Set()) return state.SkipWithError("CPU lacks AVX-512 BF16");
  // u8 x s8 runs on AVX2 too (oneDNN's vpmaddubsw GEMM), where dsv3's INT8 x int8 is its
  // eight-row vpsignb / vpmaddubsw path: the comparison an AVX2 machine can make.
  if (kind == kS8 && !f.HasAvx2Set()) return state.SkipWithError("CPU lacks AVX2");
  omp_set_num_threads(2);
  SetNumThreads(2);
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const Dt weights_dt = kind == kF32 ? Dt::f32 : kind == kBf16 ? Dt::bf16 : Dt::s8;
  const Dt src_dt = kind == kF32 ? Dt::f32 : kind == kBf16 ? Dt::bf16 : Dt::u8;
  // y[T, rows] = x[T, cols] · Wᵀ with W stored [rows, cols] (oneDNN's {cols, rows} in "ba").
  const memory::desc src_md({T, cols}, src_dt, Tag::ab), any_weights({cols, rows}, weights_dt, Tag::any),
      dst_md({T, rows}, Dt::f32, Tag::ab);
  dnnl::primitive_attr attr;
  if (kind == kS8) attr.set_output_scales(2, std::vector<float>(static_cast<size_t>(rows), 1e-4f));
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, any_weights, dst_md), attr, engine);
  const dnnl::matmul matmul(pd);

  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(T * cols));
  for (float& v : w) v = BF16ToF32(F32ToBF16(dist(rng)));  // the values a BF16 checkpoint holds
  for (float& v : x) v = dist(rng);
  memory user_w(memory::desc({cols, rows}, Dt::f32, Tag::ba), engine, w.data());
  memory user_x(memory::desc({T, cols}, Dt::f32, Tag::ab), engine, x.data());
  memory src(src_md, engine), dst(dst_md, engine);
  dnnl::primitive_attr to_int8;  // weights and activations to integers (the figure is speed only)
  if (kind == kS8) to_int8.set_output_scales(0, {100.0f});
  dnnl::reorder(user_x, src, to_int8).execute(stream, user_x, src);
  const int64_t matrix_bytes = static_cast<int64_t>(pd.weights_desc().get_size());
  const int64_t experts = ((int64_t{64} << 20) + matrix_bytes - 1) / matrix_bytes;
  std::vector<memory> weights;
  for (int64_t e = 0; e < experts; ++e) {
    weights.emplace_back(pd.weights_desc(), engine);
    dnnl::reorder(user_w, weights.back(), to_int8).execute(stream, user_w, weights.back());
  }
  stream.wait();
  for (auto _ : state) {
    for (const memory& m : weights) matmul.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, m}, {DNNL_ARG_DST, dst}});
    stream.wait();
  }
  if (kind != kS8) {
    const float* y = static_cast<const float*>(dst.get_data_handle());
    state.counters["matches_dsv3"] = MatchesDsv3(kind, w, rows, cols, x, T, std::vector<float>(y, y + T * rows));
  }
  state.SetLabel(std::string("oneDNN ") + KindName(kind) + " " + pd.impl_info_str());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * experts * matrix_bytes);
  state.counters["FLOPS"] = benchmark::Counter(static_cast<double>(2 * T * rows * cols * experts) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OneDnnExpertStream)
    ->ArgsProduct({{kF32, kBf16, kS8}, {1, 48}})
    ->UseRealTime()
    ->MinTime(0.5);

}  // namespace
}  // namespace dsv3
