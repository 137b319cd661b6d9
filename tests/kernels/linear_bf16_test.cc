// BF16 and FP8 weights times bf16 activations (LinearActivations::kBf16, engine/kernels/cpu/
// linear_bf16*.cc): the rounding of the activations, the summation order linear_kernels.h
// states (pinned by cases where another order gives another float), every e4m3 byte as bf16,
// the AVX-512 BF16 kernels against their scalar twins bit for bit where the CPU has them,
// Linear under the setting (independent of token count, threads and kernel family), which
// formats it touches, the distance to float32 activations, and the FLOPs it is counted under.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"
#include "tests/testing/weights.h"

namespace dsv3 {
namespace {

using testing::Fp8Raw;
using testing::MakeWeight;
using testing::OwnedWeight;

class LinearBf16Test : public ::testing::Test {
 protected:
  void TearDown() override {
    SetLinearKernel(LinearKernel::kAuto);
    SetLinearActivations(LinearActivations::kInt8);
    SetNumThreads(0);
  }
  static bool HasKernel() { return GetCpuFeatures().HasAvx512Bf16Set(); }
};

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
float FromBits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
uint16_t Bf16(float v) { return static_cast<uint16_t>(Bits(v) >> 16); }  // for exact bf16 values

// Activations of several magnitudes (blocks of 32 scaled apart), so lanes differ in size.
std::vector<float> Activations(int64_t n, uint32_t seed) {
  std::vector<float> x = testing::RandomNormal(n, 1.0f, seed);
  for (int64_t i = 0; i < n; ++i) {
    if ((i / 32) % 5 == 1) x[i] *= 40.0f;
    if ((i / 32) % 5 == 3) x[i] *= 1e-3f;
  }
  return x;
}

// A BF16 weight [rows, cols] at data, rows stored back to back.
cpu::RawWeight Bf16Raw(const void* data, int64_t rows, int64_t cols) {
  cpu::RawWeight raw;
  raw.kind = cpu::WeightKind::kBF16;
  raw.data = data;
  raw.rows = rows;
  raw.cols = cols;
  raw.row_bytes = cols * 2;
  return raw;
}

// The twin over x rounded by RoundActsToBf16 (FP8: Fp8Bf16LinearReference): y[T, rows].
std::vector<float> Twin(const std::vector<float>& x, int64_t T, const WeightMatrix& w) {
  if (w.w.dtype == DType::kF8E4M3) {
    std::vector<float> y(static_cast<size_t>(T * w.rows()));
    cpu::Fp8Bf16LinearReference(x.data(), T, Fp8Raw(w), 0, w.rows(), y.data(), w.rows(), false);
    return y;
  }
  const int64_t K = w.cols(), Kh = cpu::Bf16ActCols(K);
  std::vector<uint16_t> xh(static_cast<size_t>(T * Kh));
  for (int64_t t = 0; t < T; ++t) cpu::RoundActsToBf16(x.data() + t * K, K, xh.data() + t * Kh);
  cpu::RawWeight raw = Bf16Raw(w.w.data, w.rows(), K);
  std::vector<float> y(static_cast<size_t>(T * w.rows()));
  cpu::Bf16LinearReference(xh.data(), T, raw, 0, w.rows(), y.data(), w.rows(), false);
  return y;
}

TEST_F(LinearBf16Test, RoundsToNearestEvenFlushesSubnormalsQuietsNaN) {
  EXPECT_EQ(cpu::RoundToBf16(1.0f), 0x3f80);
  EXPECT_EQ(cpu::RoundToBf16(FromBits(0x3f808000)), 0x3f80) << "a tie goes to the even neighbour";
  EXPECT_EQ(cpu::RoundToBf16(FromBits(0x3f818000)), 0x3f82) << "a tie goes to the even neighbour";
  EXPECT_EQ(cpu::RoundToBf16(FromBits(0x3f808001)), 0x3f81) << "past the tie: up";
  EXPECT_EQ(cpu::RoundToBf16(FromBits(0xbf807fff)), 0xbf80) << "below the tie: down (magnitude)";
  EXPECT_EQ(cpu::RoundToBf16(1e-40f), 0x0000) << "subnormal: zero";
  EXPECT_EQ(cpu::RoundToBf16(-1e-40f), 0x8000) << "subnormal: zero, signed";
  EXPECT_EQ(cpu::RoundToBf16(std::numeric_limits<float>::max()), 0x7f80) << "rounds past the largest bf16";
  EXPECT_EQ(cpu::RoundToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(cpu::RoundToBf16(FromBits(0x7f800001)), 0x7fc0) << "a signalling NaN comes out quiet";
  EXPECT_EQ(cpu::RoundToBf16(FromBits(0xffc12345)), 0xffc1);

  // A row: rounded values, then zeros to a multiple of 32.
  std::vector<float> x = {1.0f, 3.0f, -2.5f};
  std::vector<uint16_t> h(32, 0xffff);
  cpu::RoundActsToBf16(x.data(), 3, h.data());
  EXPECT_EQ(h[0], 0x3f80);
  EXPECT_EQ(h[1], 0x4040);
  EXPECT_EQ(h[2], 0xc020);
  for (int k = 3; k < 32; ++k) EXPECT_EQ(h[k], 0) << k;
}

// vcvtne2ps2bf16 against RoundToBf16 on every kind of float: random bit patterns (NaNs,
// infinities and subnormals among them), ties, and row lengths around the 32-column step.
TEST_F(LinearBf16Test, Avx512RoundingGivesTheTwinsBits) {
  if (!HasKernel()) GTEST_SKIP() << "no AVX-512 BF16 here (" << GetCpuFeatures().ToString() << ")";
  std::mt19937 rng(7);
  std::vector<float> x(200);
  for (int it = 0; it < 400; ++it) {
    for (float& v : x) {
      uint32_t b = rng();
      if (it % 3 == 0) b &= 0x807fffffu;                   // subnormals and zeros
      if (it % 5 == 0) b |= 0x7f800000u;                   // infinities and NaNs
      if (it % 7 == 0) b = (b & 0xffff0000u) | 0x8000u;    // ties
      v = FromBits(b);
    }
    const int64_t K = 1 + it % 200, Kh = cpu::Bf16ActCols(K);
    std::vector<uint16_t> a(Kh, 1), b(Kh, 2);
    cpu::RoundActsToBf16(x.data(), K, a.data());
    cpu::RoundActsToBf16Avx512(x.data(), K, b.data());
    ASSERT_EQ(a, b) << "K " << K << ", pattern " << it;
  }
}

// One lane's order: columns 2i+1 then 2i of each 32, each addition rounded. Lane 0 holds 1
// after columns 0-1; then column 33 adds 2^24 (1 + 2^24 rounds to 2^24) and column 32 adds 1
// (2^24 + 1 rounds to 2^24 again). Even before odd would give 1 + 1 + 2^24 = 2^24 + 2, and
// one sum of the pair 2^24 + 2 as well.
TEST_F(LinearBf16Test, LaneAddsOddThenEvenColumnEachRounded) {
  std::vector<uint16_t> w(64, 0), x(64, Bf16(1.0f));
  w[0] = Bf16(1.0f);
  w[32] = Bf16(1.0f);
  w[33] = Bf16(16777216.0f);
  cpu::RawWeight raw = Bf16Raw(w.data(), 1, 64);
  float y = -1;
  cpu::Bf16LinearReference(x.data(), 1, raw, 0, 1, &y, 1, false);
  EXPECT_EQ(y, 16777216.0f);
  if (HasKernel()) {
    float fast = -1;
    cpu::Bf16LinearAvx512(x.data(), 1, raw, 0, 1, &fast, 1, false);
    EXPECT_EQ(fast, 16777216.0f) << "the CPU's order is the stated one";
  }

  // The lanes' sum: ((l0 + l8) + (l4 + l12)) + ... Lane 0 = 2^24, lane 8 = 1, lane 1 = 1: the
  // stated tree adds 2^24 + 1 first (rounds to 2^24), then 1 again (2^24); lane order would
  // add 1 + 1 first (2^24 + 2).
  std::vector<uint16_t> w2(32, 0);
  w2[1] = Bf16(16777216.0f);  // lane 0
  w2[17] = Bf16(1.0f);        // lane 8
  w2[3] = Bf16(1.0f);         // lane 1
  raw.data = w2.data();
  raw.cols = 32;
  raw.row_bytes = 64;
  cpu::Bf16LinearReference(x.data(), 1, raw, 0, 1, &y, 1, false);
  EXPECT_EQ(y, 16777216.0f);
  if (HasKernel()) {
    float fast = -1;
    cpu::Bf16LinearAvx512(x.data(), 1, raw, 0, 1, &fast, 1, false);
    EXPECT_EQ(fast, 16777216.0f);
  }
}

// Subnormal weights read as zero; a subnormal sum is flushed to zero (without the flush,
// -2^-140 is a float); a product past float's range stays exact until the sum rounds (to
// infinity here).
TEST_F(LinearBf16Test, SubnormalsAndHugeProductsAsVdpbf16ps) {
  struct Case {
    uint16_t w0, x0, w1, x1;
    float want;
  };
  const std::vector<Case> cases = {
      {0x0001, Bf16(std::ldexp(1.0f, 100)), 0, 0, 0.0f},                        // 2^-133 * 2^100 read as 0
      {Bf16(std::ldexp(1.0f, -70)), Bf16(std::ldexp(1.0f, -70)), 0, 0, 0.0f},   // 2^-140: flushed
      {Bf16(-std::ldexp(1.0f, -70)), Bf16(std::ldexp(1.0f, -70)), 0, 0, 0.0f},  // -2^-140: flushed (-0 + 0 lanes: +0)
      {Bf16(std::ldexp(1.0f, 100)), Bf16(std::ldexp(1.0f, 100)), 0, 0, INFINITY},  // 2^200
      // Column 1 (odd) first: -2^140 rounds to -inf, and +2^202 cannot bring it back.
      {Bf16(std::ldexp(1.0f, 101)), Bf16(std::ldexp(1.0f, 101)), Bf16(-std::ldexp(1.0f, 70)),
       Bf16(std::ldexp(1.0f, 70)), -INFINITY},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::vector<uint16_t> w(32, 0), x(32, 0);
    w[0] = c.w0;
    x[0] = c.x0;
    w[1] = c.w1;
    x[1] = c.x1;
    cpu::RawWeight raw = Bf16Raw(w.data(), 1, 32);
    float y = 1;
    cpu::Bf16LinearReference(x.data(), 1, raw, 0, 1, &y, 1, false);
    EXPECT_EQ(Bits(y), Bits(c.want)) << "case " << i;
    if (HasKernel()) {
      float fast = 1;
      cpu::Bf16LinearAvx512(x.data(), 1, raw, 0, 1, &fast, 1, false);
      EXPECT_EQ(Bits(fast), Bits(y)) << "case " << i;
    }
  }
}

// The kernel against the twin: row counts that cut the six- and eight-row tiles, K around
// the 32-column step (tails of 8, 4, 7 and 31 columns), token counts around the four-token
// tile and past the prefetching threshold, accumulation and a wider y.
TEST_F(LinearBf16Test, Avx512GivesTheTwinsBits) {
  if (!HasKernel()) GTEST_SKIP() << "no AVX-512 BF16 here (" << GetCpuFeatures().ToString() << ")";
  uint32_t seed = 1;
  for (int64_t K : {32, 40, 100, 7, 1536, 543}) {
    for (int64_t rows : {1, 3, 4, 5, 8, 11, 13, 37}) {
      OwnedWeight w = MakeWeight(DType::kBF16, rows, K, seed++);
      for (int64_t T : {1, 2, 5, 13, 48}) {
        const auto x = Activations(T * K, seed++);
        const int64_t Kh = cpu::Bf16ActCols(K), ldy = rows + 3;
        std::vector<uint16_t> xh(static_cast<size_t>(T * Kh));
        for (int64_t t = 0; t < T; ++t) cpu::RoundActsToBf16(x.data() + t * K, K, xh.data() + t * Kh);
        cpu::RawWeight raw = Bf16Raw(w.m.w.data, rows, K);
        for (bool accumulate : {false, true}) {
          std::vector<float> a(static_cast<size_t>(T * ldy), 0.5f), b = a;
          cpu::Bf16LinearReference(xh.data(), T, raw, 0, rows, a.data(), ldy, accumulate);
          cpu::Bf16LinearAvx512(xh.data(), T, raw, 0, rows, b.data(), ldy, accumulate);
          ASSERT_EQ(a, b) << "K " << K << ", rows " << rows << ", T " << T << ", accumulate " << accumulate;
        }
        // Rows [1, rows) alone: a piece starting mid-matrix.
        if (rows > 1) {
          std::vector<float> a(static_cast<size_t>(T * ldy), 0.0f), b = a;
          cpu::Bf16LinearReference(xh.data(), T, raw, 1, rows, a.data(), ldy, false);
          cpu::Bf16LinearAvx512(xh.data(), T, raw, 1, rows, b.data(), ldy, false);
          ASSERT_EQ(a, b) << "K " << K << ", rows 1.." << rows << ", T " << T;
        }
      }
    }
  }
}

// What kBf16 touches: BF16 and FP8 weights take bf16 activations; INT4 and INT8 take int8 in
// every step (kInt8All's bits); F32 and F16 keep float32. LinearSameInput over mixed formats
// gives each its own form.
TEST_F(LinearBf16Test, OtherFormatsTakeWhatInt8AllGivesThem) {
  OwnedWeight bf16 = MakeWeight(DType::kBF16, 19, 128, 21);
  OwnedWeight fp8 = MakeWeight(DType::kF8E4M3, 17, 128, 22, 32);
  OwnedWeight f16 = MakeWeight(DType::kF16, 5, 128, 23);
  OwnedWeight int4 = testing::MakeIntWeight(true, 21, 128, 24, 32, false, 1);
  const int64_t T = 9;
  const auto x = Activations(T * 128, 25);
  const ScopedDecodeStep prefill(false);
  const auto run = [&](LinearActivations a, const WeightMatrix& w) {
    SetLinearActivations(a);
    std::vector<float> y(T * w.rows());
    Linear(x.data(), T, w, y.data());
    return y;
  };
  EXPECT_EQ(run(LinearActivations::kBf16, bf16.m), Twin(x, T, bf16.m));
  EXPECT_NE(run(LinearActivations::kBf16, bf16.m), run(LinearActivations::kF32, bf16.m));
  EXPECT_EQ(run(LinearActivations::kBf16, fp8.m), Twin(x, T, fp8.m));
  EXPECT_NE(run(LinearActivations::kBf16, fp8.m), run(LinearActivations::kF32, fp8.m));
  EXPECT_EQ(run(LinearActivations::kBf16, int4.m), run(LinearActivations::kInt8All, int4.m));
  EXPECT_EQ(run(LinearActivations::kBf16, f16.m), run(LinearActivations::kF32, f16.m));

  SetLinearActivations(LinearActivations::kBf16);
  std::vector<float> a(T * 19), b(T * 17), c(T * 21), d(T * 19);
  LinearSameInput(x.data(), T, {{&bf16.m, a.data()}, {&fp8.m, b.data()}, {&int4.m, c.data()}, {&bf16.m, d.data()}});
  EXPECT_EQ(a, Twin(x, T, bf16.m));
  EXPECT_EQ(d, a);
  EXPECT_EQ(b, Twin(x, T, fp8.m));
  EXPECT_EQ(c, run(LinearActivations::kInt8All, int4.m));

  // An input prepared for BF16 given to an FP8 weight, or for FP8 to a BF16 one, is prepared
  // again in the other's form.
  SetLinearActivations(LinearActivations::kBf16);
  LinearInput in;
  in.Prepare(x.data(), T, bf16.m);
  ASSERT_EQ(in.layout, 3);
  std::vector<float> e(T * 17);
  LinearRows(in, fp8.m, 0, 17, e.data(), 17, false);
  EXPECT_EQ(e, Twin(x, T, fp8.m));
  in.Prepare(x.data(), T, fp8.m);
  ASSERT_EQ(in.layout, 4);
  std::vector<float> f(T * 19);
  LinearRows(in, bf16.m, 0, 19, f.data(), 19, false);
  EXPECT_EQ(f, Twin(x, T, bf16.m));
}

// FP8 as bf16: every e4m3 byte but the NaNs (0x7f, 0xff; the quantizer never writes them)
// becomes exactly e4m3 · 2^-8, and the block's scale · 256 comes in through the activations:
// one row holding all 256 bytes against one-hot tokens gives y[t] = E4M3ToF32(byte t) · scale
// (scale 2^-8: every product exact), through the panel (many tokens) and in registers (one).
TEST_F(LinearBf16Test, EveryE4m3ByteAsBf16) {
  std::vector<uint8_t> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[b] = static_cast<uint8_t>(b);
  std::vector<float> scale(2, 1.0f / 256);  // two 128-column blocks
  WeightMatrix w;
  w.w = TensorView{bytes.data(), DType::kF8E4M3, Shape{1, 256}};
  w.scale_inv = TensorView{scale.data(), DType::kF32, Shape{1, 2}};
  std::vector<float> x(256 * 256, 0.0f);
  for (int t = 0; t < 256; ++t) x[t * 256 + t] = 1.0f;
  SetLinearActivations(LinearActivations::kBf16);
  std::vector<LinearKernel> families = {LinearKernel::kReference};
  if (HasKernel()) families.push_back(LinearKernel::kAvx512);
  for (LinearKernel k : families) {
    SetLinearKernel(k);
    std::vector<float> all(256), one(1);
    Linear(x.data(), 256, w, all.data());
    for (int b = 0; b < 256; ++b) {
      Linear(x.data() + b * 256, 1, w, one.data());
      EXPECT_EQ(Bits(one[0]), Bits(all[b])) << "byte " << b << ", " << LinearKernelName(k);
      if (b == 0x7f || b == 0xff) {
        EXPECT_EQ(all[b], (b == 0x7f ? 480.0f : -480.0f) / 256) << "as Fp8Format reads it";
        continue;
      }
      // (== so that -0, byte 0x80, passes: the lanes' sum adds +0 to it.)
      EXPECT_EQ(all[b], E4M3ToF32(static_cast<uint8_t>(b)) / 256) << "byte " << b << ", " << LinearKernelName(k);
    }
  }
}

// The FP8 kernel against its twin: blocks of 16 (two scales in one 32-column step), 32 and 128,
// ranges that start and end inside a row block, K with a 16- or 8-column tail past the last 32,
// token counts on both sides of the in-register path (four) and the panel's sixteen rows; the
// in-register rows converted by Fp8BytesToBf16 and, on a CPU with VBMI, by byte permutes. The
// 37-row weights hold every byte value (NaN's 0x7f and 0xff too: 480 · 2^-8 in both).
TEST_F(LinearBf16Test, Avx512Fp8GivesTheTwinsBits) {
  if (!HasKernel()) GTEST_SKIP() << "no AVX-512 BF16 here (" << GetCpuFeatures().ToString() << ")";
  std::vector<bool> forms = {false};
  if (GetCpuFeatures().avx512_vbmi) forms.push_back(true);
  uint32_t seed = 50;
  for (int64_t block : {16, 32, 128}) {
    for (int64_t K : {int64_t{96}, int64_t{544}, int64_t{1536}, int64_t{40}}) {
      if (K % 16 != 0 && block != 32) continue;
      for (int64_t rows : {7, 37, 130}) {
        OwnedWeight w = MakeWeight(DType::kF8E4M3, rows, K, seed++, block);
        if (rows == 37)
          for (int64_t i = 0; i < rows * K; ++i) w.bytes[static_cast<size_t>(i)] = static_cast<uint8_t>((i * 7 + i / K) % 256);
        const cpu::RawWeight raw = Fp8Raw(w.m);
        ASSERT_TRUE(cpu::TakesBf16Fp8(raw));
        for (int64_t T : {1, 2, 4, 5, 17}) {
          const auto x = Activations(T * K, seed++);
          std::vector<uint16_t> scratch(static_cast<size_t>(cpu::Fp8Bf16ScratchWords(T, K)));
          for (const auto& [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {3, rows - 2}}) {
            for (bool accumulate : {false, true}) {
              for (bool byte_permutes : forms) {
                std::vector<float> a(static_cast<size_t>(T * rows), 0.25f), b = a;
                cpu::Fp8Bf16LinearReference(x.data(), T, raw, r0, r1, a.data(), rows, accumulate);
                cpu::Fp8Bf16LinearAvx512(x.data(), T, raw, r0, r1, b.data(), rows, accumulate, scratch.data(),
                                         byte_permutes);
                ASSERT_EQ(a, b) << "block " << block << ", K " << K << ", rows " << r0 << ".." << r1 << ", T " << T
                                << (byte_permutes ? ", byte permutes" : "");
              }
            }
          }
        }
      }
    }
  }
}

// Linear under kBf16: the twin's bits in any step, for any token count (each token alone gives
// its row of the batch), thread count and kernel family (the reference family runs the twin),
// through Linear and through a prepared input's rows in two calls. BF16 (70 tokens: 64 or more
// are rounded in parallel) and FP8 (300 rows: three row blocks, the last one short).
TEST_F(LinearBf16Test, LinearGivesTheTwinWhateverTheSplit) {
  struct Case {
    DType dtype;
    int64_t rows, cols, T;
    int layout;
  };
  for (const Case& c : {Case{DType::kBF16, 70, 96, 70, 3}, Case{DType::kF8E4M3, 300, 256, 66, 4}}) {
    const int64_t R = c.rows, K = c.cols, T = c.T;
    OwnedWeight w = MakeWeight(c.dtype, R, K, 11, 128);
    const auto x = Activations(T * K, 12);
    const std::vector<float> want = Twin(x, T, w.m);
    SetLinearActivations(LinearActivations::kBf16);
    std::vector<LinearKernel> families = {LinearKernel::kReference};
    if (HasKernel()) families.push_back(LinearKernel::kAvx512);
    for (LinearKernel k : families) {
      SetLinearKernel(k);
      const std::string where = std::string(DTypeName(c.dtype)) + ", " + LinearKernelName(k);
      for (int threads : {1, 2}) {
        SetNumThreads(threads);
        const ScopedDecodeStep prefill(false);
        EXPECT_EQ(CurrentLinearActivations(), LinearActivations::kBf16);
        std::vector<float> y(T * R);
        Linear(x.data(), T, w.m, y.data());
        EXPECT_EQ(y, want) << where << ", " << threads << " threads";
        for (int64_t t : {int64_t{0}, int64_t{33}, T - 1}) {
          std::vector<float> one(R);
          const ScopedDecodeStep decode(true);
          Linear(x.data() + t * K, 1, w.m, one.data());
          EXPECT_EQ(one, std::vector<float>(want.begin() + t * R, want.begin() + (t + 1) * R))
              << "token " << t << " alone, " << where;
        }
        LinearInput in;
        in.Prepare(x.data(), T, w.m);
        EXPECT_EQ(in.layout, c.layout);
        std::vector<float> rows(T * R);
        LinearRows(in, w.m, 0, 30, rows.data(), R, false);
        LinearRows(in, w.m, 30, R, rows.data(), R, false);
        EXPECT_EQ(rows, want) << where;
      }
    }
  }
}

// Each thread rounds a prepared input's activations into a buffer of its own (linear.cc's
// Bf16Acts), kept while the input stays the same: an input prepared again, even over the same
// float rows with new values, is rounded again, and jobs on different inputs in one region each
// read their own.
TEST_F(LinearBf16Test, EveryPreparedInputRoundedAgain) {
  const int64_t R = 70, K = 96, T = 9;
  OwnedWeight w = MakeWeight(DType::kBF16, R, K, 13, 128);
  const auto x1 = Activations(T * K, 14), x2 = Activations(T * K, 15);
  const std::vector<float> want1 = Twin(x1, T, w.m), want2 = Twin(x2, T, w.m);
  ASSERT_NE(want1, want2);
  SetLinearActivations(LinearActivations::kBf16);
  std::vector<LinearKernel> families = {LinearKernel::kReference};
  if (HasKernel()) families.push_back(LinearKernel::kAvx512);
  for (LinearKernel k : families) {
    SetLinearKernel(k);
    for (int threads : {1, 2}) {
      SetNumThreads(threads);
      const std::string where = std::string(LinearKernelName(k)) + ", " + std::to_string(threads) + " threads";
      std::vector<float> rows = x1, y(T * R);
      LinearInput a, b;
      a.Prepare(rows.data(), T, w.m);
      LinearRows(a, w.m, 0, R, y.data(), R, false);
      EXPECT_EQ(y, want1) << where;
      rows = x2;  // the same float rows, new values
      a.Prepare(rows.data(), T, w.m);
      LinearRows(a, w.m, 0, R, y.data(), R, false);
      EXPECT_EQ(y, want2) << where << ": prepared again";
      b.Prepare(x1.data(), T, w.m);
      std::vector<float> y1(T * R), y2(T * R), y3(T * R);
      LinearJobs({{&b, &w.m, y1.data()}, {&a, &w.m, y2.data()}, {&b, &w.m, y3.data()}}, 1);
      EXPECT_EQ(y1, want1) << where;
      EXPECT_EQ(y2, want2) << where;
      EXPECT_EQ(y3, want1) << where;
    }
  }
}

// Against exact float32 activations: each activation moves by at most 2^-8 of itself, and
// both sums round K times, so |y_bf16 - y_f32| <= (2^-8 + 2K · 2^-24) · Σ|w x| (with a little
// slack for the lanes' tree).
void DistanceWithinTheRounding(DType dt) {
  const int64_t K = 1536, T = 6;
  OwnedWeight w = MakeWeight(dt, 40, K, 31, 128);
  const auto x = Activations(T * K, 32);
  SetLinearActivations(LinearActivations::kF32);
  std::vector<float> exact(T * 40), rounded(T * 40);
  Linear(x.data(), T, w.m, exact.data());
  SetLinearActivations(LinearActivations::kBf16);
  Linear(x.data(), T, w.m, rounded.data());
  std::vector<float> wf(static_cast<size_t>(40 * K));
  DequantizeRows(w.m, 0, 40, wf.data());
  double worst = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < 40; ++r) {
      double mag = 0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(static_cast<double>(wf[r * K + k]) * x[t * K + k]);
      const double bound = (std::ldexp(1.0, -8) + 2.0 * K * std::ldexp(1.0, -24)) * mag * 1.01;
      const double d = std::fabs(static_cast<double>(rounded[t * 40 + r]) - exact[t * 40 + r]);
      EXPECT_LE(d, bound) << "token " << t << ", row " << r;
      worst = std::max(worst, d / mag);
    }
  EXPECT_GT(worst, 0.0) << "the activations were rounded (" << DTypeName(dt) << ")";
}

TEST_F(LinearBf16Test, DistanceToFloatActivationsWithinTheRounding) {
  for (DType dt : {DType::kBF16, DType::kF8E4M3}) DistanceWithinTheRounding(dt);
}

// The counters put bf16 products (BF16 and FP8 weights) under bf16_flops (bench compares them
// with the vdpbf16ps peak), int8 ones under int8_flops, and the rest (F32) under neither.
TEST_F(LinearBf16Test, CountedAsBf16Flops) {
  OwnedWeight bf16 = MakeWeight(DType::kBF16, 8, 64, 41);
  OwnedWeight int4 = testing::MakeIntWeight(true, 8, 64, 42, 32, true, 1);
  OwnedWeight fp8 = MakeWeight(DType::kF8E4M3, 8, 64, 43, 32);
  OwnedWeight f32 = MakeWeight(DType::kF32, 8, 64, 45);
  const auto x = Activations(3 * 64, 44);
  std::vector<float> y(3 * 8);
  LinearCounters counters;
  SetLinearCounters(&counters);
  SetLinearActivations(LinearActivations::kBf16);
  Linear(x.data(), 3, bf16.m, y.data());
  LinearCounters::Totals t = counters.Read();
  EXPECT_EQ(t.flops, 2u * 3 * 8 * 64);
  EXPECT_EQ(t.bf16_flops, t.flops);
  EXPECT_EQ(t.int8_flops, 0u);
  counters.Reset();
  Linear(x.data(), 3, int4.m, y.data());
  Linear(x.data(), 3, fp8.m, y.data());
  Linear(x.data(), 3, f32.m, y.data());
  t = counters.Read();
  EXPECT_EQ(t.bf16_flops, 2u * 3 * 8 * 64) << "FP8's";
  EXPECT_EQ(t.int8_flops, 2u * 3 * 8 * 64) << "INT4's";
  EXPECT_EQ(t.flops, 3 * t.int8_flops);
  SetLinearCounters(nullptr);
}

}  // namespace
}  // namespace dsv3
