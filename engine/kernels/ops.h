// CPU operators the model is written in. They see plain arrays and weight views, never the
// model: the same ops serve the forward pass, training and the tests.
// All compute is float32; weights may be stored F32, BF16, F16, FP8 (e4m3 with block scales),
// INT8 or packed INT4 (with group scales) and are converted in small tiles next to the
// arithmetic, never expanded whole.
#pragma once

#include <atomic>
#include <cstdint>

#include "engine/tensor/tensor.h"

namespace dsv3 {

// A projection weight [out, in] as the checkpoint stores it. The storage format follows from
// w.dtype (engine/quant/int_quant.h and config.json's quantization_config spell it out):
//   F32 / BF16 / F16  plain values.
//   F8_E4M3  w[i,j] = e4m3(q[i,j]) * scale_inv[i/block_out, j/block_in]     (DeepSeek-V3 release)
//   I8       w[i,j] = q[i,j] * scale[i/block_out, j/block_in], scale F32     (dsv3_int8)
//   U8       int4, two per byte: byte [i, j/2] holds column j in its low nibble when j is even,
//            in its high nibble when j is odd; u in [0,15]; w[i,j] = (u - z) * scale[i, j/block_in]
//            with scale F16 and z = zero[i, j/block_in] (U8) or 8 when `zero` is empty
//            (symmetric). block_out is 1.                                      (dsv3_int4)
// block_in is the real group width for this matrix (a per-channel scale has block_in == in).
struct WeightMatrix {
  TensorView w;          // [out, in]; U8 (int4): [out, ceil(in/2)]
  TensorView scale_inv;  // F8_E4M3 only: F32 [ceil(out/block_out), ceil(in/block_in)]
  int64_t block_out = 128, block_in = 128;
  TensorView scale;      // I8: F32, U8 (int4): F16; [ceil(out/block_out), ceil(in/block_in)]
  TensorView zero;       // U8 (int4) asymmetric only: U8 zero points, same shape as scale
  int64_t in_features = 0;  // U8 (int4) only: logical columns (w has ceil(in/2))

  bool empty() const { return w.empty(); }
  int64_t rows() const { return w.shape[0]; }
  int64_t cols() const { return w.dtype == DType::kU8 ? in_features : w.shape[1]; }
};

// y[T, out] = x[T, in] · Wᵀ, accumulated in float32. Parallel over output rows.
void Linear(const float* x, int64_t T, const WeightMatrix& w, float* y);
// Same, accumulating into y (y += x·Wᵀ).
void LinearAccumulate(const float* x, int64_t T, const WeightMatrix& w, float* y);

// Rows [r0, r1) of y = x·Wᵀ on the calling thread, y with row stride ldy (x is [T, in]
// contiguous). For callers that spread several matrices over the thread pool at once (the
// MoE experts of one step) instead of splitting each small matrix.
void LinearRows(const float* x, int64_t T, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                bool accumulate);

// Kernel families Linear can use. kAuto picks the best one this CPU runs (cpu_features.h);
// the others force one, for tests and benchmarks that compare a fast kernel with its twin.
// kReference is the float32 tile + Eigen path every format has.
enum class LinearKernel { kAuto, kReference, kAvx2 };
void SetLinearKernel(LinearKernel k);
// The family kAuto resolves to on this CPU (or the forced one), e.g. for `dsv3 bench`.
LinearKernel ActiveLinearKernel();
const char* LinearKernelName(LinearKernel k);

// Optional tally of the work Linear does, for rooflines: weight bytes read and FLOPs. Off
// (null) by default; when set, every Linear/LinearRows call adds to it with relaxed atomics
// (a few per matrix, nothing per element). Not thread-safe to swap while a forward runs.
struct LinearCounters {
  std::atomic<uint64_t> weight_bytes{0}, flops{0}, calls{0};
  void Reset() {
    weight_bytes = 0;
    flops = 0;
    calls = 0;
  }
};
void SetLinearCounters(LinearCounters* counters);

// Attention of a few queries over many cached rows (decode over MLA's latent cache, where
// several heads share one cache): each cached row is read once for all M queries.
// scores[m * lds + s] (+)= q[m * ldq : +C] · keys[s * C : +C] for m < M, s < S.
void MultiQueryScores(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                      float* scores, int64_t lds, bool accumulate);
// out[m * C : +C] = sum over s of p[m * ldp + s] · vals[s * C : +C] for m < M.
void MultiQueryWeightedSum(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                           float* out);

// Writes rows [r0, r1) of W as float32 into dst ([r1-r0, in], row-major).
void DequantizeRows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst);

// y[t] = x[t] / rms(x[t]) * weight, rms over D with eps inside the square root.
void RmsNorm(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y);

// x[i] = silu(gate[i]) * up[i] over n elements, written into gate.
void SiluMul(float* gate, const float* up, int64_t n);

// Numerically stable softmax over n elements in place.
void SoftmaxInPlace(float* x, int64_t n);

// log_softmax of one row of logits into out (may alias).
void LogSoftmax(const float* logits, int64_t n, float* out);

// Embedding lookup: row `id` of a [V, D] table of any float dtype into dst.
void EmbeddingRow(const TensorView& table, int64_t id, float* dst);

// Dot product of two float arrays.
float Dot(const float* a, const float* b, int64_t n);

}  // namespace dsv3
