// CPU operators the model is written in. They see plain arrays and weight views, never the
// model: the same ops serve the forward pass, training and the tests.
// All compute is float32; weights may be stored F32, BF16, F16 or FP8 (e4m3 with block
// scales) and are converted in small tiles next to the arithmetic, never expanded whole.
#pragma once

#include <cstdint>

#include "engine/tensor/tensor.h"

namespace dsv3 {

// A projection weight [out, in] as the checkpoint stores it.
struct WeightMatrix {
  TensorView w;          // [out, in]
  TensorView scale_inv;  // F8_E4M3 only: F32 [ceil(out/block_out), ceil(in/block_in)]
  int64_t block_out = 128, block_in = 128;

  bool empty() const { return w.empty(); }
  int64_t rows() const { return w.shape[0]; }
  int64_t cols() const { return w.shape[1]; }
};

// y[T, out] = x[T, in] · Wᵀ, accumulated in float32. Parallel over output rows.
void Linear(const float* x, int64_t T, const WeightMatrix& w, float* y);
// Same, accumulating into y (y += x·Wᵀ).
void LinearAccumulate(const float* x, int64_t T, const WeightMatrix& w, float* y);

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
