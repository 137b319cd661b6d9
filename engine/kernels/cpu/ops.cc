// Element-wise and row-wise CPU operators: norms, activations, softmax, embedding lookup.
#include "engine/kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/cpu/linear_kernels.h"

namespace dsv3 {

namespace {

// Elements per parallel chunk of the element-wise operators: a prefill's norms and activations
// (hundreds of thousands of elements per layer) were a few percent of its time on one thread
// while the other waited; a decode step's stay below this and run inline.
constexpr int64_t kElementGrain = 16384;

}  // namespace

void RmsNorm(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y) {
  thread_local std::vector<float> wbuf;
  const float* wf;
  if (weight.dtype == DType::kF32) {
    wf = weight.f32();
  } else {
    wbuf.resize(static_cast<size_t>(D));
    ElementsAsF32(weight, 0, D, wbuf.data());
    wf = wbuf.data();
  }
  // Token rows are independent: split across threads, each row computed as on one.
  ParallelFor(T, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, D)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * D;
      float* yr = y + t * D;
      float ss = 0.0f;
      for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
      float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
      for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * inv * wf[i];
    }
  });
}

void AddScaled(float* y, const float* x, float a, int64_t n) {
  if (UsesAvx2Kernels(ActiveLinearKernel())) return cpu::AddScaledAvx2(y, x, a, n);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void SiluMul(float* gate, const float* up, int64_t n) {
  const bool avx2 = UsesAvx2Kernels(ActiveLinearKernel());
  ParallelFor(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    if (avx2) return cpu::SiluMulAvx2(gate + i0, up + i0, i1 - i0);
    for (int64_t i = i0; i < i1; ++i) {
      float g = gate[i];
      gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void SoftmaxInPlace(float* x, int64_t n, float scale) {
  if (UsesAvx2Kernels(ActiveLinearKernel())) return cpu::SoftmaxAvx2(x, n, scale);
  const float m = ScaleAndMax(x, n, scale);
  const float inv = 1.0f / ExpShiftedSum(x, n, m);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float ScaleAndMax(float* x, int64_t n, float scale) {
  if (UsesAvx2Kernels(ActiveLinearKernel())) return cpu::ScaleMaxAvx2(x, n, scale);
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    m = std::max(m, x[i]);
  }
  return m;
}

float ExpShiftedSum(float* x, int64_t n, float shift) {
  if (UsesAvx2Kernels(ActiveLinearKernel())) return cpu::ExpShiftedSumAvx2(x, n, shift);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

void LogSoftmax(const float* logits, int64_t n, float* out) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, logits[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - m));
  float lse = m + static_cast<float>(std::log(sum));
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

void EmbeddingRow(const TensorView& table, int64_t id, float* dst) {
  const int64_t D = table.shape[1];
  ElementsAsF32(table, id * D, D, dst);
}

float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace dsv3
