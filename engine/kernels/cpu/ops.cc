// Reference CPU operators. Matrix products go through Eigen on float32 tiles; weights in
// lower precision are dequantized a tile at a time into a per-thread buffer.
#include "engine/kernels/ops.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/base/threads.h"

namespace dsv3 {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat>;
using StridedMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

constexpr int64_t kTileRows = 64;

void LinearImpl(const float* x, int64_t T, const WeightMatrix& w, float* y, bool accumulate) {
  const int64_t out = w.rows(), in = w.cols();
  ConstMap X(x, T, in);
  // Work is split over output rows; each chunk is tiled so a tile of dequantized weights
  // stays in cache while it meets every token.
  const int64_t grain = std::max<int64_t>(kTileRows, 1);
  ParallelFor(out, grain, [&](int64_t r_begin, int64_t r_end) {
    thread_local std::vector<float> tile;
    for (int64_t r0 = r_begin; r0 < r_end; r0 += kTileRows) {
      const int64_t r1 = std::min(r_end, r0 + kTileRows), n = r1 - r0;
      const float* wt;
      if (w.w.dtype == DType::kF32) {
        wt = w.w.f32() + r0 * in;
      } else {
        tile.resize(static_cast<size_t>(n * in));
        DequantizeRows(w, r0, r1, tile.data());
        wt = tile.data();
      }
      ConstMap W(wt, n, in);
      StridedMap Y(y + r0, T, n, Eigen::OuterStride<>(out));
      if (accumulate) {
        Y.noalias() += X * W.transpose();
      } else {
        Y.noalias() = X * W.transpose();
      }
    }
  });
}

}  // namespace

void Linear(const float* x, int64_t T, const WeightMatrix& w, float* y) { LinearImpl(x, T, w, y, false); }
void LinearAccumulate(const float* x, int64_t T, const WeightMatrix& w, float* y) { LinearImpl(x, T, w, y, true); }

void DequantizeRows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst) {
  const int64_t in = w.cols();
  switch (w.w.dtype) {
    case DType::kF32:
      std::memcpy(dst, w.w.f32() + r0 * in, static_cast<size_t>((r1 - r0) * in) * 4);
      return;
    case DType::kBF16: {
      const uint16_t* src = w.w.as<uint16_t>() + r0 * in;
      for (int64_t i = 0, n = (r1 - r0) * in; i < n; ++i) dst[i] = BF16ToF32(src[i]);
      return;
    }
    case DType::kF16: {
      const uint16_t* src = w.w.as<uint16_t>() + r0 * in;
      for (int64_t i = 0, n = (r1 - r0) * in; i < n; ++i) dst[i] = F16ToF32(src[i]);
      return;
    }
    case DType::kF8E4M3: {
      const uint8_t* src = w.w.as<uint8_t>();
      const float* scale = w.scale_inv.f32();
      const int64_t scale_cols = w.scale_inv.shape[1];
      for (int64_t r = r0; r < r1; ++r) {
        const float* srow = scale + (r / w.block_out) * scale_cols;
        const uint8_t* q = src + r * in;
        float* d = dst + (r - r0) * in;
        for (int64_t c = 0; c < in; ++c) d[c] = E4M3ToF32(q[c]) * srow[c / w.block_in];
      }
      return;
    }
    default:
      // Integer formats are handled by engine/quant; the loader never builds such a matrix.
      std::memset(dst, 0, static_cast<size_t>((r1 - r0) * in) * 4);
      return;
  }
}

void RmsNorm(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y) {
  thread_local std::vector<float> wbuf;
  const float* wf;
  if (weight.dtype == DType::kF32) {
    wf = weight.f32();
  } else {
    wbuf.resize(static_cast<size_t>(D));
    for (int64_t i = 0; i < D; ++i) wbuf[i] = ElementAsF32(weight, i);
    wf = wbuf.data();
  }
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    float ss = 0.0f;
    for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * inv * wf[i];
  }
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void SoftmaxInPlace(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
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
  TensorView row = table;
  row.data = static_cast<const uint8_t*>(table.data) + id * D * static_cast<int64_t>(DTypeSize(table.dtype));
  row.shape = Shape{D};
  for (int64_t i = 0; i < D; ++i) dst[i] = ElementAsF32(row, i);
}

float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace dsv3
