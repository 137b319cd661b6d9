// The int8 / int4 weight formats: encoder (engine/quant/int_quant) and decoder
// (DequantizeRows, what the engine runs) agree on the layout, and every value reads back
// within the format's bound |w - ŵ| <= scale/2 (uniform grid of step `scale`, every value in
// range by construction). The 1e-6 relative slack covers float32's w/scale rounding.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/base/dtype.h"
#include "engine/kernels/ops.h"
#include "engine/quant/int_quant.h"

namespace dsv3 {
namespace {

std::vector<float> Sample(int64_t rows, int64_t cols) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  // Mixed signs, an all-positive row (exercises the zero point), outliers, exact zeros.
  for (int64_t i = 0; i < rows * cols; ++i) w[i] = std::sin(0.37f * i) * (1 + (i % 7)) * 0.01f;
  for (int64_t c = 0; c < cols; ++c) w[cols + c] = std::fabs(w[cols + c]) + 0.05f;
  w[5] = 0.9f;
  w[2 * cols] = 0.0f;
  return w;
}

void ExpectWithinHalfScale(const std::vector<float>& w, const std::vector<float>& back, int64_t cols,
                           const std::function<float(int64_t, int64_t)>& scale) {
  for (size_t i = 0; i < w.size(); ++i) {
    const int64_t r = static_cast<int64_t>(i) / cols, c = static_cast<int64_t>(i) % cols;
    const double bound = scale(r, c) / 2 * (1 + 1e-5) + std::fabs(w[i]) * 1e-6;
    ASSERT_LE(std::fabs(back[i] - w[i]), bound) << "element [" << r << "," << c << "] " << w[i] << " -> " << back[i];
  }
}

TEST(Int8, PerChannelAndPerBlockRoundTripThroughDequantizeRows) {
  const int64_t rows = 40, cols = 70;
  const auto w = Sample(rows, cols);
  for (auto [bo, bi] : {std::pair<int64_t, int64_t>{1, cols}, {32, 32}}) {
    auto q = QuantizeInt8(w.data(), rows, cols, bo, bi, "test");
    ASSERT_TRUE(q.ok());
    const int64_t sc = (cols + bi - 1) / bi;
    WeightMatrix m;
    m.w = {q.value().q.data(), DType::kI8, Shape{rows, cols}};
    m.scale = {q.value().scale.data(), DType::kF32, Shape{(rows + bo - 1) / bo, sc}};
    m.block_out = bo;
    m.block_in = bi;
    std::vector<float> back(w.size());
    DequantizeRows(m, 0, 17, back.data());  // two calls: row ranges need not align to blocks
    DequantizeRows(m, 17, rows, back.data() + 17 * cols);
    ExpectWithinHalfScale(w, back, cols, [&](int64_t r, int64_t c) { return q.value().scale[(r / bo) * sc + c / bi]; });
    for (int8_t v : q.value().q) EXPECT_NE(v, -128);
  }
}

TEST(Int4, GroupsSymmetricAndAsymmetricRoundTripThroughDequantizeRows) {
  const int64_t rows = 6, cols = 71;  // odd width: the last byte holds one value
  const auto w = Sample(rows, cols);
  for (int64_t g : {int64_t{32}, int64_t{64}, cols}) {
    for (bool sym : {false, true}) {
      auto q = QuantizeInt4(w.data(), rows, cols, g, sym, "test");
      ASSERT_TRUE(q.ok());
      const int64_t groups = (cols + g - 1) / g;
      ASSERT_EQ(q.value().packed.size(), static_cast<size_t>(rows * 36));
      ASSERT_EQ(q.value().zero.size(), sym ? 0u : static_cast<size_t>(rows * groups));
      WeightMatrix m;
      m.w = {q.value().packed.data(), DType::kU8, Shape{rows, 36}};
      m.scale = {q.value().scale.data(), DType::kF16, Shape{rows, groups}};
      if (!sym) m.zero = {q.value().zero.data(), DType::kU8, Shape{rows, groups}};
      m.block_out = 1;
      m.block_in = g;
      m.in_features = cols;
      EXPECT_EQ(m.cols(), cols);
      std::vector<float> back(w.size());
      DequantizeRows(m, 0, rows, back.data());
      ExpectWithinHalfScale(w, back, cols,
                            [&](int64_t r, int64_t c) { return F16ToF32(q.value().scale[r * groups + c / g]); });
      for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(q.value().packed[r * 36 + 35] >> 4, 0) << "padding nibble";
      EXPECT_EQ(back[2 * cols], 0.0f) << "zero must be exact";
    }
  }
}

TEST(Int4, NibbleOrderIsLowNibbleFirst) {
  // Symmetric, one group: scale = 7/7 = 1, u = w + 8.
  const float w[3] = {-7.0f, 7.0f, 1.0f};
  auto q = QuantizeInt4(w, 1, 3, 3, true, "test");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(F16ToF32(q.value().scale[0]), 1.0f);
  ASSERT_EQ(q.value().packed.size(), 2u);
  EXPECT_EQ(q.value().packed[0], (15 << 4) | 1);  // column 0 (u=1) low, column 1 (u=15) high
  EXPECT_EQ(q.value().packed[1], 9);               // column 2 (u=9) low, padding high
}

TEST(Int4, ScaleRoundsUpToF16AndNonFiniteIsRefused) {
  for (float x : {1e-3f, 0.0123457f, 3.14159f, 1e-6f}) EXPECT_GE(F16ToF32(F32ToF16RoundUp(x)), x);
  std::vector<float> w = {1.0f, NAN, 2.0f, 3.0f};
  auto q = QuantizeInt4(w.data(), 1, 4, 4, false, "ck: tensor x");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("ck: tensor x"), std::string::npos);
  auto q8 = QuantizeInt8(w.data(), 1, 4, 1, 4, "ck: tensor x");
  ASSERT_FALSE(q8.ok());
}

}  // namespace
}  // namespace dsv3
