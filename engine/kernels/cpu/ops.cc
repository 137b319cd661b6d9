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

// Each of eight rows' sums of squares (rows D apart), each one chain in column order as a
// plain loop sums it, the eight chains side by side. Kept scalar: GCC's SLP vectorizer packed
// the chains into vectors gathered from the rows and held them on the stack, slower than one
// row at a time.
__attribute__((optimize("no-tree-slp-vectorize"))) void SumsOfSquares8(const float* x, int64_t D, float* ss) {
  const float *x0 = x, *x1 = x + D, *x2 = x + 2 * D, *x3 = x + 3 * D;
  const float *x4 = x + 4 * D, *x5 = x + 5 * D, *x6 = x + 6 * D, *x7 = x + 7 * D;
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
  for (int64_t i = 0; i < D; ++i) {
    s0 += x0[i] * x0[i];
    s1 += x1[i] * x1[i];
    s2 += x2[i] * x2[i];
    s3 += x3[i] * x3[i];
    s4 += x4[i] * x4[i];
    s5 += x5[i] * x5[i];
    s6 += x6[i] * x6[i];
    s7 += x7[i] * x7[i];
  }
  ss[0] = s0, ss[1] = s1, ss[2] = s2, ss[3] = s3, ss[4] = s4, ss[5] = s5, ss[6] = s6, ss[7] = s7;
}

// y = x / rms(x) * w for one row whose sum of squares is ss.
inline void NormalizeRow(const float* x, float ss, const float* w, int64_t D, float eps, float* y) {
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
  for (int64_t i = 0; i < D; ++i) y[i] = x[i] * inv * w[i];
}

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
  // Token rows are independent: split across threads, each row computed as on one. A row's sum
  // of squares is one chain of adds in order; eight rows go at once so that eight chains keep
  // the adder busy (one at a time, each add waited on the last: a 512-token prefill's norm of
  // 1536 columns took ~360 us on 2 threads, now ~280).
  constexpr int64_t kRowsAtOnce = 8;
  ParallelFor(T, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, D)), [&](int64_t t0, int64_t t1) {
    int64_t t = t0;
    for (; t + kRowsAtOnce <= t1; t += kRowsAtOnce) {
      float ss[kRowsAtOnce];
      SumsOfSquares8(x + t * D, D, ss);
      for (int64_t r = 0; r < kRowsAtOnce; ++r) NormalizeRow(x + (t + r) * D, ss[r], wf, D, eps, y + (t + r) * D);
    }
    for (; t < t1; ++t) {
      const float* xr = x + t * D;
      float ss = 0.0f;
      for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
      NormalizeRow(xr, ss, wf, D, eps, y + t * D);
    }
  });
}

void AddScaled(float* y, const float* x, float a, int64_t n) {
  const bool avx2 = UsesAvx2Kernels(ActiveLinearKernel());
  ParallelFor(n, kElementGrain, [&](int64_t i0, int64_t i1) {
    if (avx2) return cpu::AddScaledAvx2(y + i0, x + i0, a, i1 - i0);
    for (int64_t i = i0; i < i1; ++i) y[i] += a * x[i];
  });
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
  if (ActiveLinearKernel() == LinearKernel::kAvx512) return cpu::SoftmaxAvx512(x, n, scale);
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
  if (ActiveLinearKernel() == LinearKernel::kAvx512) return cpu::ExpShiftedSumAvx512(x, n, shift);
  if (UsesAvx2Kernels(ActiveLinearKernel())) return cpu::ExpShiftedSumAvx2(x, n, shift);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

double LogSumExpShifted(const float* x, int64_t n, float shift) {
  // A chunk's sum by the active family's kernel (AVX-512 and AVX2 give the same bits); null:
  // std::exp in double.
  double (*vector_sum)(const float*, int64_t, float) = nullptr;
  if (ActiveLinearKernel() == LinearKernel::kAvx512) {
    vector_sum = cpu::SumExpShiftedAvx512;
  } else if (UsesAvx2Kernels(ActiveLinearKernel())) {
    vector_sum = cpu::SumExpShiftedAvx2;
  }
  const int64_t chunks = (n + kLogSumExpChunk - 1) / kLogSumExpChunk;
  thread_local std::vector<double> partial;  // per chunk, on the calling thread's scratch
  partial.assign(static_cast<size_t>(chunks), 0.0);
  double* sums = partial.data();
  ParallelFor(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = x + c * kLogSumExpChunk;
      const int64_t m = std::min(kLogSumExpChunk, n - c * kLogSumExpChunk);
      if (vector_sum) {
        sums[c] = vector_sum(xc, m, shift);
        continue;
      }
      double sum = 0.0;
      for (int64_t i = 0; i < m; ++i) sum += std::exp(static_cast<double>(xc[i] - shift));
      sums[c] = sum;
    }
  });
  double total = 0.0;
  for (int64_t c = 0; c < chunks; ++c) total += sums[c];
  return std::log(total);
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
