#include "tests/testing/weights.h"

#include <gtest/gtest.h>

#include <random>

#include "engine/quant/int_quant.h"

namespace dsv3::testing {

OwnedWeight MakeIntWeight(bool int4, int64_t rows, int64_t cols, uint32_t seed, int64_t block, bool symmetric,
                          int64_t block_out) {
  if (block_out == 0) block_out = block;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<float> f(static_cast<size_t>(rows * cols));
  for (float& v : f) v = dist(rng);
  OwnedWeight o;
  if (!int4) {
    auto q = QuantizeInt8(f.data(), rows, cols, block_out, block, "test");
    EXPECT_TRUE(q.ok());
    o.bytes.assign(q.value().q.begin(), q.value().q.end());
    o.scale = q.value().scale;
    o.m.w = TensorView{o.bytes.data(), DType::kI8, Shape{rows, cols}};
    o.m.scale = TensorView{o.scale.data(), DType::kF32, Shape{(rows + block_out - 1) / block_out, (cols + block - 1) / block}};
    o.m.block_out = block_out;
    o.m.block_in = block;
    return o;
  }
  auto q = QuantizeInt4(f.data(), rows, cols, block, symmetric, "test");
  EXPECT_TRUE(q.ok());
  o.bytes = q.value().packed;
  o.scale16 = q.value().scale;
  o.zero = q.value().zero;
  const int64_t groups = (cols + block - 1) / block;
  o.m.w = TensorView{o.bytes.data(), DType::kU8, Shape{rows, (cols + 1) / 2}};
  o.m.scale = TensorView{o.scale16.data(), DType::kF16, Shape{rows, groups}};
  if (!symmetric) o.m.zero = TensorView{o.zero.data(), DType::kU8, Shape{rows, groups}};
  o.m.in_features = cols;
  o.m.block_out = 1;
  o.m.block_in = block;
  return o;
}

OwnedWeight MakeWeight(DType dtype, int64_t rows, int64_t cols, uint32_t seed, int64_t block) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  OwnedWeight o;
  o.bytes.resize(static_cast<size_t>(rows * cols) * DTypeSize(dtype));
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = dist(rng);
    switch (dtype) {
      case DType::kF32: reinterpret_cast<float*>(o.bytes.data())[i] = v; break;
      case DType::kBF16: reinterpret_cast<uint16_t*>(o.bytes.data())[i] = F32ToBF16(v); break;
      case DType::kF16: reinterpret_cast<uint16_t*>(o.bytes.data())[i] = F32ToF16(v); break;
      case DType::kF8E4M3: o.bytes[static_cast<size_t>(i)] = F32ToE4M3(v * 100.0f); break;
      default: break;
    }
  }
  o.m.w = TensorView{o.bytes.data(), dtype, Shape{rows, cols}};
  if (dtype == DType::kF8E4M3) {
    const int64_t sr = (rows + block - 1) / block, sc = (cols + block - 1) / block;
    o.scale.resize(static_cast<size_t>(sr * sc));
    for (size_t i = 0; i < o.scale.size(); ++i) o.scale[i] = 0.01f * static_cast<float>(1 + i % 3);
    o.m.scale_inv = TensorView{o.scale.data(), DType::kF32, Shape{sr, sc}};
    o.m.block_out = o.m.block_in = block;
  }
  return o;
}

cpu::RawWeight Fp8Raw(const WeightMatrix& w) {
  cpu::RawWeight raw;
  raw.kind = cpu::WeightKind::kF8E4M3;
  raw.data = w.w.data;
  raw.rows = w.rows();
  raw.cols = w.cols();
  raw.row_bytes = w.cols();
  raw.scale = w.scale_inv.f32();
  raw.scale_cols = w.scale_inv.shape[1];
  raw.block_out = w.block_out;
  raw.block_in = w.block_in;
  return raw;
}

}  // namespace dsv3::testing
