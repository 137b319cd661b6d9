// Int8 activations for INT8 and INT4 weights (engine/kernels/cpu/linear_q8*.cc): the AVX2
// and AVX-512 VNNI kernels against their scalar twin bit for bit (the VNNI ones where the CPU
// has them), independence from token count, thread split
// and row blocking, and the distance to exact float32 activations against the bound the
// quantization step allows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"
#include "tests/testing/weights.h"

namespace dsv3 {
namespace {

using testing::MakeIntWeight;
using testing::OwnedWeight;

struct Case {
  std::string name;
  bool int4;
  int64_t rows, cols, block;
  bool symmetric;
  int64_t block_out;
};

// The layouts `dsv3 quantize` writes (INT8 per channel, INT4 g64 with zero points, INT4 g32
// symmetric), INT8 in 128 x 128 blocks, row counts that leave tails of every tile size, and
// group counts around the kernels' table sizes.
std::vector<Case> Cases() {
  return {{"int8 per channel", false, 37, 256, 256, true, 1},
          {"int8 blocks 128", false, 150, 384, 128, true, 128},
          {"int4 g64 zero points", true, 29, 192, 64, false, 1},
          {"int4 g32 symmetric", true, 13, 96, 32, true, 1},
          // INT4 takes blocks in pairs: an odd block count leaves a last one alone.
          {"int4 g32 zero points odd blocks", true, 17, 160, 32, false, 1},
          {"int4 g128", true, 8, 256, 128, false, 1},
          // Twelve blocks (a step of eight, a tail of four) and 72 (nine steps).
          {"int4 g32 12 groups", true, 11, 384, 32, true, 1},
          {"int4 g32 72 groups", true, 9, 2304, 32, false, 1},
          // Symmetric g32 over two row groups and two of the eight-row path's 64-block chunks:
          // its scales eight groups at a time, from each chunk's first block.
          {"int4 g32 symmetric 72 groups", true, 16, 2304, 32, true, 1},
          // INT4 decode takes eight blocks per step: groups of one, two (g64), four (g128), all
          // eight (g256), and a size that fits none of those (g96), whole steps and tails.
          {"int4 g64 24 groups", true, 19, 1536, 64, false, 1},
          {"int4 g128 symmetric", true, 10, 1280, 128, true, 1},
          {"int4 g256", true, 9, 768, 256, false, 1},
          {"int4 g96", true, 7, 576, 96, false, 1},
          // The VNNI kernel takes sixteen blocks per step: one step and a lone odd block (17),
          // a tail of fifteen with the lone block (31), g64 and g128 steps with tails of twelve
          // and eight (44, 40 blocks).
          {"int4 g32 17 blocks", true, 6, 544, 32, true, 1},
          // Exactly one step a row (bench-v3-mini's MoE down projections, K = 512): the
          // activations are loaded once for all the rows, for each group width's scales.
          {"int4 g32 one step", true, 11, 512, 32, true, 1},
          {"int4 g32 zero points one step", true, 7, 512, 32, false, 1},
          {"int4 g64 one step", true, 6, 512, 64, false, 1},
          {"int4 g128 symmetric one step", true, 5, 512, 128, true, 1},
          {"int4 g256 one step", true, 4, 512, 256, false, 1},
          // Several tokens take rows of one step a token at a time, 32 rows at a time: three
          // such pieces, the last one short, with and without a tail step.
          {"int4 g32 one step 70 rows", true, 70, 512, 32, true, 1},
          {"int4 g64 zero points 12 blocks 45 rows", true, 45, 384, 64, false, 1},
          {"int4 g32 zero points 31 blocks", true, 5, 992, 32, false, 1},
          {"int4 g64 44 blocks", true, 9, 1408, 64, false, 1},
          {"int4 g128 40 blocks", true, 4, 1280, 128, false, 1},
          // A tail of four blocks (half an AVX2 decode step) for each group step: g32 symmetric
          // and g64 above (384, 1408 columns), g32 with zero points, g128 with and without, g256
          // (its last group the tail's alone, half full).
          {"int4 g32 zero points 12 blocks", true, 5, 384, 32, false, 1},
          {"int4 g128 12 blocks", true, 7, 384, 128, false, 1},
          {"int4 g128 symmetric 12 blocks", true, 6, 384, 128, true, 1},
          {"int4 g256 20 blocks", true, 5, 640, 256, false, 1},
          {"int8 g32 17 blocks", false, 21, 544, 32, true, 1},
          // INT8 decode takes two blocks per step: groups of three blocks change inside a step.
          {"int8 g96", false, 18, 576, 96, true, 1},
          // The INT8 GEMM's 32-row tiles: one of 31 rows (its second vector one lane short).
          {"int8 per channel 63 rows", false, 63, 256, 256, true, 1}};
}

// The fast kernel families this CPU runs: AVX2, and AVX2 with AVX-512 VNNI where present.
std::vector<LinearKernel> FastKernels() {
  std::vector<LinearKernel> k = {LinearKernel::kAvx2};
  if (GetCpuFeatures().HasAvx512VnniSet()) {
    k.push_back(LinearKernel::kAvx512);
  } else {
    std::printf("[  NOTE    ] no AVX-512 VNNI here (%s): its kernels are not tested\n", GetCpuFeatures().ToString().c_str());
  }
  return k;
}

class LinearQ8Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C (" << GetCpuFeatures().ToString() << ")";
    SetLinearActivations(LinearActivations::kInt8);
  }
  void TearDown() override {
    SetLinearKernel(LinearKernel::kAuto);
    SetLinearActivations(LinearActivations::kInt8);
    SetNumThreads(0);
  }
};

std::vector<float> Activations(int64_t n, uint32_t seed) {
  std::vector<float> x = testing::RandomNormal(n, 1.0f, seed);
  // Blocks of other magnitudes and an all-zero block, so scales differ between blocks.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / cpu::kActBlock;
    if (block % 5 == 1) x[i] *= 40.0f;
    if (block % 5 == 3) x[i] *= 1e-3f;
    if (block % 7 == 4) x[i] = 0.0f;
  }
  return x;
}

// Where the quantizer stores position p of block b (of nb): in column order, or for INT4 with
// the nibble order's evens and odds of each pair of blocks side by side (linear_kernels.h).
int64_t StoredAt(bool nibbles, int64_t b, int64_t p, int64_t nb) {
  if (!nibbles || (b | 1) >= nb) return b * 32 + p;
  return (b & ~int64_t{1}) * 32 + (p < 16 ? 0 : 32) + (b & 1) * 16 + p % 16;
}

TEST_F(LinearQ8Test, QuantizerMatchesItsTwinAndRoundsToNearest) {
  const int64_t K = 352, nb = K / cpu::kActBlock;  // an odd block count: the last block alone
  std::vector<float> x = Activations(K, 5);
  x[3] = -x[3];  // both signs
  for (bool nibbles : {false, true}) {
    std::vector<int8_t> q1(K), q2(K);
    std::vector<float> d1(nb), d2(nb);
    std::vector<int32_t> s1(nb), s2(nb);
    cpu::QuantizeActsReference(x.data(), K, nibbles, q1.data(), d1.data(), s1.data());
    cpu::QuantizeActsAvx2(x.data(), K, nibbles, q2.data(), d2.data(), s2.data());
    EXPECT_EQ(q1, q2) << "nibble order " << nibbles;
    EXPECT_EQ(d1, d2);
    EXPECT_EQ(s1, s2);
    for (int64_t b = 0; b < nb; ++b) {
      int32_t sum = 0;
      float amax = 0;
      for (int64_t p = 0; p < cpu::kActBlock; ++p) amax = std::fmax(amax, std::fabs(x[b * 32 + p]));
      EXPECT_EQ(d1[b], amax / 127.0f);
      for (int64_t p = 0; p < cpu::kActBlock; ++p) {
        const int64_t col = !nibbles ? p : p < 16 ? 2 * p : 2 * (p - 16) + 1;
        const float xv = x[b * 32 + col];
        const int v = q1[StoredAt(nibbles, b, p, nb)];
        sum += v;
        ASSERT_LE(std::abs(v), 127);
        // Nearest step: within half a step (and a rounding of the reciprocal) of x.
        EXPECT_LE(std::fabs(v * d1[b] - xv), 0.5f * d1[b] * (1 + 1e-5f) + 1e-30f) << "block " << b << " column " << col;
      }
      EXPECT_EQ(sum, s1[b]);
    }
  }
}

TEST_F(LinearQ8Test, NonFiniteActivationsGiveNaNNotGarbage) {
  const int64_t K = 64;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x = Activations(K, 6);
    x[40] = bad;
    std::vector<int8_t> q1(K), q2(K);
    std::vector<float> d1(2), d2(2);
    std::vector<int32_t> s1(2), s2(2);
    cpu::QuantizeActsReference(x.data(), K, false, q1.data(), d1.data(), s1.data());
    cpu::QuantizeActsAvx2(x.data(), K, false, q2.data(), d2.data(), s2.data());
    EXPECT_EQ(q1, q2);
    EXPECT_TRUE(std::isnan(d1[1]) && std::isnan(d2[1]));
    EXPECT_FALSE(std::isnan(d2[0]));
    // One token (the tiles) and eight (with VNNI, the GEMM for INT8 and INT4), the bad token
    // among good ones: its outputs are NaN, the others' are not.
    for (const bool int4 : {false, true}) {
      OwnedWeight w = MakeIntWeight(int4, 9, K, 7, int4 ? 32 : K, true, 1);
      for (const int64_t T : {1, 8}) {
        std::vector<float> xs;
        for (int64_t t = 0; t < T; ++t) {
          const std::vector<float> good = Activations(K, 20 + static_cast<uint32_t>(t));
          const std::vector<float>& row = t == T / 2 ? x : good;
          xs.insert(xs.end(), row.begin(), row.end());
        }
        std::vector<float> y(static_cast<size_t>(T * 9));
        Linear(xs.data(), T, w.m, y.data());
        for (int64_t t = 0; t < T; ++t)
          for (int64_t r = 0; r < 9; ++r)
            EXPECT_EQ(std::isnan(y[t * 9 + r]), t == T / 2) << (int4 ? "int4" : "int8") << " T=" << T << " token " << t;
      }
    }
  }
}

// The fast kernels (INT8: one token in 8 x 1 tiles, more in 4 x 2, from three tokens (K <= 512,
// five for the 544- and 576-column cases) eight rows at a time, across the 128-row scale blocks'
// boundary in "int8 blocks 128" and with the last rows in tiles; INT4: a row and one or two
// tokens at a time, from two to eight tokens by layout and row length eight rows at a time
// (the g64 and g32 zero-point cases from two, odd block counts included) with the rest a row at a time, the
// 72-block case in two chunks whose chains carry over; with AVX-512 VNNI from three tokens (INT8, and
// INT4 rows of under 32 blocks ending in a partial step of sixteen) or nine (INT4) the GEMM's 32
// repacked rows x up to six tokens, whose last pass here takes one to six) and the scalar
// twin, bit for bit, through Linear and through LinearRows with a stride and accumulation.
TEST_F(LinearQ8Test, FastKernelsMatchTheTwinBitForBit) {
  for (const LinearKernel kernel : FastKernels()) {
  uint32_t seed = 10;
  for (const Case& c : Cases()) {
    OwnedWeight w = MakeIntWeight(c.int4, c.rows, c.cols, seed++, c.block, c.symmetric, c.block_out);
    for (int64_t T : {1, 2, 3, 4, 5, 7, 8, 9, 13, 17, 40}) {
      const auto x = Activations(T * c.cols, seed++);
      std::vector<float> ref(static_cast<size_t>(T * c.rows)), fast(ref.size());
      SetLinearKernel(LinearKernel::kReference);
      Linear(x.data(), T, w.m, ref.data());
      SetLinearKernel(kernel);
      Linear(x.data(), T, w.m, fast.data());
      ASSERT_EQ(fast, ref) << LinearKernelName(kernel) << " " << c.name << " T=" << T;

      const int64_t ldy = c.rows + 3, r0 = 1, r1 = c.rows - 2;
      std::vector<float> ref_rows(static_cast<size_t>(T * ldy), 0.5f), fast_rows = ref_rows;
      SetLinearKernel(LinearKernel::kReference);
      LinearRows(x.data(), T, w.m, r0, r1, ref_rows.data(), ldy, true);
      SetLinearKernel(kernel);
      LinearRows(x.data(), T, w.m, r0, r1, fast_rows.data(), ldy, true);
      ASSERT_EQ(fast_rows, ref_rows) << LinearKernelName(kernel) << " " << c.name << " rows T=" << T;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < ldy; ++j)
          if (j < r0 || j >= r1) ASSERT_EQ(fast_rows[t * ldy + j], 0.5f) << "wrote outside the rows";
    }
  }
  }
}

// More tokens than the eight-row paths take in one pass (activations of 256 KB a pass: 256
// tokens at K = 1024), so a second pass of tokens meets the same row groups: bit for bit
// against the twin, through Linear and through LinearRows with a stride, accumulation and a
// row range that leaves rows to the tiles.
TEST_F(LinearQ8Test, EightRowPathsTakeTokensInSeveralPasses) {
  for (const LinearKernel kernel : FastKernels()) {
    for (const bool int4 : {false, true}) {
      const int64_t rows = 21, cols = 1024, T = 300;  // 256 KB / 1 KB: passes of 256 and 44 tokens
      OwnedWeight w = MakeIntWeight(int4, rows, cols, 70, int4 ? 32 : cols, /*symmetric=*/true, 1);
      const auto x = Activations(T * cols, 71);
      std::vector<float> ref(static_cast<size_t>(T * rows)), fast(ref.size());
      SetLinearKernel(LinearKernel::kReference);
      Linear(x.data(), T, w.m, ref.data());
      SetLinearKernel(kernel);
      Linear(x.data(), T, w.m, fast.data());
      ASSERT_EQ(fast, ref) << LinearKernelName(kernel) << (int4 ? " int4" : " int8");
      const int64_t ldy = rows + 2, r0 = 2, r1 = rows - 1;
      std::vector<float> ref_rows(static_cast<size_t>(T * ldy), 0.25f), fast_rows = ref_rows;
      SetLinearKernel(LinearKernel::kReference);
      LinearRows(x.data(), T, w.m, r0, r1, ref_rows.data(), ldy, true);
      SetLinearKernel(kernel);
      LinearRows(x.data(), T, w.m, r0, r1, fast_rows.data(), ldy, true);
      ASSERT_EQ(fast_rows, ref_rows) << LinearKernelName(kernel) << (int4 ? " int4" : " int8") << " rows";
    }
  }
}

// A token's outputs may not depend on who else is in the batch (the MoE gives each expert a
// different token count) nor on how rows are split between threads.
TEST_F(LinearQ8Test, ResultsDoNotDependOnTokenCountOrThreads) {
  for (const LinearKernel kernel : FastKernels()) {
  SetLinearKernel(kernel);
  uint32_t seed = 40;
  for (const Case& c : Cases()) {
    OwnedWeight w = MakeIntWeight(c.int4, c.rows, c.cols, seed++, c.block, c.symmetric, c.block_out);
    const int64_t T = 23;
    const auto x = Activations(T * c.cols, seed++);
    std::vector<float> all(static_cast<size_t>(T * c.rows)), one(static_cast<size_t>(c.rows));
    SetNumThreads(2);
    Linear(x.data(), T, w.m, all.data());
    SetNumThreads(1);
    std::vector<float> all1(all.size());
    Linear(x.data(), T, w.m, all1.data());
    ASSERT_EQ(all, all1) << c.name << ": thread split changed the result";
    for (int64_t t = 0; t < T; ++t) {
      Linear(x.data() + t * c.cols, 1, w.m, one.data());
      for (int64_t r = 0; r < c.rows; ++r)
        ASSERT_EQ(one[r], all[t * c.rows + r]) << LinearKernelName(kernel) << " " << c.name << " token " << t << " row " << r;
    }
  }
  }
}

// A LinearInput prepared once gives what LinearRows quantizing per call gives; one prepared
// for another format falls back to quantizing for this one.
TEST_F(LinearQ8Test, PreparedInputMatchesPerCallQuantization) {
  OwnedWeight i8 = MakeIntWeight(false, 70, 128, 60, 128, true, 1);
  OwnedWeight i4 = MakeIntWeight(true, 70, 128, 61, 64, false, 1);
  const int64_t T = 3;
  const auto x = Activations(T * 128, 62);
  LinearInput in;
  in.Prepare(x.data(), T, i8.m);
  EXPECT_EQ(in.layout, 1);
  for (const WeightMatrix* w : {&i8.m, &i4.m}) {
    std::vector<float> a(static_cast<size_t>(T * 70)), b(a.size());
    LinearRows(x.data(), T, *w, 0, 64, a.data(), 70, false);
    LinearRows(x.data(), T, *w, 64, 70, a.data(), 70, false);
    LinearRows(in, *w, 0, 64, b.data(), 70, false);
    LinearRows(in, *w, 64, 70, b.data(), 70, false);
    EXPECT_EQ(a, b);
  }
  SetLinearActivations(LinearActivations::kF32);
  in.Prepare(x.data(), T, i8.m);
  EXPECT_EQ(in.layout, 0) << "float activations need no int8 copy";
}

// Against exact float32 activations: x is replaced by q·d with |x - q·d| <= d/2 per element,
// so each output moves by at most sum_k |w[r,k]|·d(k)/2, plus the float32 rounding of the
// two sums (K·eps·sum|x·w| each side).
// A decode step's INT4 activations (one token, or a batch of up to kInt4DecodeTokensMax) are
// regrouped for the AVX-512 decode when the input is prepared (LinearInput::fours), whichever
// kernel family is forced at the time, and multiplied under AVX-512 they give the twin's bits,
// for a row tail, a lone odd block, exactly one step and whole steps, one token or several
// (their steps shared, four tokens at a time); the kernel handed tokens without them (a caller
// of its own) gives them too, through AVX2.
TEST_F(LinearQ8Test, DecodeTokensPreparedForAnyKernelFamilyGiveTheSameBits) {
  if (!GetCpuFeatures().HasAvx512VnniSet()) GTEST_SKIP() << "no AVX-512 VNNI here (" << GetCpuFeatures().ToString() << ")";
  for (const int64_t K : {int64_t{96}, int64_t{512}, int64_t{544}, int64_t{1536}}) {
    OwnedWeight w = MakeIntWeight(true, 37, K, 70 + static_cast<uint32_t>(K), 32, false, 1);
    for (const int64_t T : {int64_t{1}, int64_t{3}, cpu::kInt4DecodeTokensMax}) {
      const auto x = Activations(T * K, 71 + static_cast<uint32_t>(T));
      const std::string what = "K=" + std::to_string(K) + " T=" + std::to_string(T);
      std::vector<float> twin(static_cast<size_t>(T * 37)), regrouped(twin.size()), here(twin.size());
      SetLinearKernel(LinearKernel::kReference);
      Linear(x.data(), T, w.m, twin.data());
      for (const LinearKernel prepared_under : {LinearKernel::kAvx512, LinearKernel::kAvx2, LinearKernel::kReference}) {
        LinearInput in;
        SetLinearKernel(prepared_under);
        in.Prepare(x.data(), T, w.m);
        EXPECT_FALSE(in.fours.empty()) << what << " " << LinearKernelName(prepared_under);
        SetLinearKernel(LinearKernel::kAvx512);
        std::fill(regrouped.begin(), regrouped.end(), -1.0f);
        LinearRows(in, w.m, 0, 37, regrouped.data(), 37, false);
        EXPECT_EQ(regrouped, twin) << what << " prepared under " << LinearKernelName(prepared_under);
      }
      LinearInput in;
      in.Prepare(x.data(), T, w.m);
      in.fours.clear();  // as a caller that quantizes by itself would hand it over
      LinearRows(in, w.m, 0, 37, here.data(), 37, false);
      EXPECT_EQ(here, twin) << what << " without the regrouped activations";
    }
  }
}

TEST_F(LinearQ8Test, DistanceToFloatActivationsWithinTheQuantizationStep) {
  uint32_t seed = 80;
  for (const Case& c : Cases()) {
    OwnedWeight w = MakeIntWeight(c.int4, c.rows, c.cols, seed++, c.block, c.symmetric, c.block_out);
    const int64_t T = 6, K = c.cols, R = c.rows;
    const auto x = Activations(T * K, seed++);
    std::vector<float> q8(static_cast<size_t>(T * R)), f32(q8.size());
    Linear(x.data(), T, w.m, q8.data());
    SetLinearActivations(LinearActivations::kF32);
    Linear(x.data(), T, w.m, f32.data());
    SetLinearActivations(LinearActivations::kInt8);
    std::vector<float> wf(static_cast<size_t>(R * K));
    DequantizeRows(w.m, 0, R, wf.data());
    double moved = 0;
    for (int64_t t = 0; t < T; ++t) {
      std::vector<float> d(static_cast<size_t>(K / 32));
      for (int64_t b = 0; b < K / 32; ++b) {
        float amax = 0;
        for (int64_t p = 0; p < 32; ++p) amax = std::fmax(amax, std::fabs(x[t * K + b * 32 + p]));
        d[b] = amax / 127.0f;
      }
      for (int64_t r = 0; r < R; ++r) {
        double step = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          step += std::fabs(double(wf[r * K + k])) * d[k / 32] * 0.5 * (1 + 1e-5);
          mag += std::fabs(double(wf[r * K + k]) * x[t * K + k]);
        }
        const double tol = step + 2.0 * K * std::numeric_limits<float>::epsilon() * (mag + step);
        const double err = std::fabs(double(q8[t * R + r]) - f32[t * R + r]);
        ASSERT_LE(err, tol) << c.name << " token " << t << " row " << r;
        moved = std::max(moved, err);
      }
    }
    EXPECT_GT(moved, 0.0) << c.name << ": int8 activations changed nothing, so they were not used";
  }
}

// Int8 activations apply in decode steps only: inside a step marked otherwise (prefill) the
// result is float32's, bit for bit, for Linear and for a LinearInput prepared there.
TEST_F(LinearQ8Test, OnlyDecodeStepsUseInt8) {
  OwnedWeight w = MakeIntWeight(true, 21, 128, 95, 32, false, 1);
  const auto x = Activations(3 * 128, 96);
  std::vector<float> f32(63), i8(63), in_prefill(63), in_decode(63), rows(63);
  SetLinearActivations(LinearActivations::kF32);
  Linear(x.data(), 3, w.m, f32.data());
  SetLinearActivations(LinearActivations::kInt8);
  Linear(x.data(), 3, w.m, i8.data());
  ASSERT_NE(f32, i8);
  {
    const ScopedDecodeStep step(false);
    EXPECT_EQ(CurrentLinearActivations(), LinearActivations::kF32);
    Linear(x.data(), 3, w.m, in_prefill.data());
    LinearInput in;
    in.Prepare(x.data(), 3, w.m);
    EXPECT_EQ(in.layout, 0);
    LinearRows(in, w.m, 0, 21, rows.data(), 21, false);
    {
      const ScopedDecodeStep inner(true);
      Linear(x.data(), 3, w.m, in_decode.data());
    }
    EXPECT_EQ(CurrentLinearActivations(), LinearActivations::kF32) << "the inner scope restores the outer";
  }
  EXPECT_EQ(in_prefill, f32);
  EXPECT_EQ(rows, f32);
  EXPECT_EQ(in_decode, i8);
}

// kInt8All: int8 activations in every step, prefill included, for INT4 and INT8 weights alike
// (the int8 result bit for bit); other formats keep float32.
TEST_F(LinearQ8Test, Int8AllUsesInt8InEveryStep) {
  OwnedWeight int4 = MakeIntWeight(true, 21, 128, 95, 32, false, 1);
  OwnedWeight int8 = MakeIntWeight(false, 19, 128, 96, 128, true, 1);
  OwnedWeight bf16 = testing::MakeWeight(DType::kBF16, 17, 128, 97);
  for (const WeightMatrix* w : {&int4.m, &int8.m, &bf16.m}) {
    const int64_t R = w->rows();
    const auto x = Activations(70 * 128, 98);  // a prefill's worth of tokens: the GEMM paths
    std::vector<float> f32(70 * R), i8(70 * R), all(70 * R), rows(70 * R);
    SetLinearActivations(LinearActivations::kF32);
    Linear(x.data(), 70, *w, f32.data());
    SetLinearActivations(LinearActivations::kInt8);
    Linear(x.data(), 70, *w, i8.data());
    SetLinearActivations(LinearActivations::kInt8All);
    {
      const ScopedDecodeStep step(false);
      EXPECT_EQ(CurrentLinearActivations(), LinearActivations::kInt8);
      Linear(x.data(), 70, *w, all.data());
      LinearInput in;
      in.Prepare(x.data(), 70, *w);
      LinearRows(in, *w, 0, R, rows.data(), R, false);
    }
    SetLinearActivations(LinearActivations::kInt8);
    EXPECT_EQ(all, i8);
    EXPECT_EQ(rows, i8);
    if (w == &bf16.m) {
      EXPECT_EQ(all, f32);
    } else {
      EXPECT_NE(all, f32);
    }
  }
}

// Shapes the int8 kernels do not take keep float32 activations (and so the float kernels'
// exact x·dequant(W)).
TEST_F(LinearQ8Test, ShapesWithoutWholeBlocksStayFloat) {
  OwnedWeight odd = MakeIntWeight(false, 10, 100, 90, 100, true, 1);  // K % 32 != 0
  OwnedWeight g16 = MakeIntWeight(true, 10, 96, 91, 16, false, 1);    // group 16 < 32
  for (const WeightMatrix* w : {&odd.m, &g16.m}) {
    const auto x = Activations(2 * w->cols(), 92);
    std::vector<float> a(20), b(20);
    Linear(x.data(), 2, *w, a.data());
    SetLinearActivations(LinearActivations::kF32);
    Linear(x.data(), 2, *w, b.data());
    SetLinearActivations(LinearActivations::kInt8);
    EXPECT_EQ(a, b);
  }
}

}  // namespace
}  // namespace dsv3
