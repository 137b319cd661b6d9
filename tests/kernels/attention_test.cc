// The multi-query attention products (decode over MLA's latent cache; from 16 queries the
// GEMM) against their reference twin: every query count around the kernels' register blocks,
// widths with and without a tail of C % 8, accumulate on and off, and rows that must not be
// touched; and the AVX2 exponentials of attention's softmax against std::exp. Skips where the
// CPU lacks AVX2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"
#include "tests/testing/weights.h"

namespace dsv3 {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) { return testing::RandomNormal(n, 1.0f, seed); }

// Bit for bit (NaN's included), as the twins' contracts say.
bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A bf16 operand's value as vdpbf16ps reads it: a subnormal as a signed zero.
double Bf16Operand(uint16_t h) { return BF16ToF32((h & 0x7f80) == 0 ? h & 0x8000 : h); }

class MultiQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C";
  }
  void TearDown() override { SetLinearKernel(LinearKernel::kAuto); }
};

// Both are float32 sums of n products in different orders: within n * eps * sum|products|.
void ExpectWithinSumBound(float fast, float ref, double magnitude, int64_t n, const std::string& what) {
  const double tol = double(n) * std::numeric_limits<float>::epsilon() * magnitude + 1e-30;
  EXPECT_LE(std::fabs(double(fast) - ref), tol) << what << ": fast " << fast << " reference " << ref;
}

// For each score of M rows (stride lds, the first S used): the padding past S left as it was,
// and check(m, s, i) on the rest (i: the index into both vectors).
template <typename Check>
void ForEachScore(const std::vector<float>& fast, const std::vector<float>& init, int64_t M, int64_t S, int64_t lds,
                  const std::string& what, const Check& check) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t s = 0; s < lds; ++s) {
      const size_t i = static_cast<size_t>(m * lds + s);
      if (s >= S) {
        ASSERT_EQ(fast[i], init[i]) << what << ": wrote past S at m=" << m;
        continue;
      }
      check(m, s, i);
    }
  }
}

TEST_F(MultiQueryTest, ScoresMatchTheReference) {
  uint32_t seed = 1;
  for (int64_t C : {256, 32, 37}) {
    for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 9, 16, 41}) {  // from 16 queries: the GEMM path
      for (int64_t S : {1, 13, 100}) {
        for (bool accumulate : {false, true}) {
          const int64_t ldq = C + 3, lds = S + 2;  // strides wider than the rows
          const auto q = Random(M * ldq, seed++), keys = Random(S * C, seed++), init = Random(M * lds, seed++);
          std::vector<float> ref = init, fast = init;
          SetLinearKernel(LinearKernel::kReference);
          MultiQueryScores(q.data(), M, ldq, keys.data(), S, C, ref.data(), lds, accumulate);
          SetLinearKernel(LinearKernel::kAvx2);
          MultiQueryScores(q.data(), M, ldq, keys.data(), S, C, fast.data(), lds, accumulate);
          const std::string what = "C=" + std::to_string(C) + " M=" + std::to_string(M) + " S=" + std::to_string(S) +
                                   (accumulate ? " accumulate" : "");
          ForEachScore(fast, init, M, S, lds, what, [&](int64_t m, int64_t s, size_t i) {
            double mag = accumulate ? std::fabs(init[i]) : 0.0;
            for (int64_t c = 0; c < C; ++c) mag += std::fabs(double(q[m * ldq + c]) * keys[s * C + c]);
            ExpectWithinSumBound(fast[i], ref[i], mag, C + 1, what);
          });
        }
      }
    }
  }
}

// MLA's two-part scores (latent and rope caches) against the reference's two products, with
// tails in either part, every query-tile remainder, and the many-query (GEMM) path.
TEST_F(MultiQueryTest, TwoPartScoresMatchTheReference) {
  uint32_t seed = 500;
  for (const auto& [C1, C2] : std::vector<std::pair<int64_t, int64_t>>{{256, 32}, {37, 32}, {64, 5}, {24, 0}}) {
    for (int64_t M : {1, 2, 3, 4, 5, 12, 13, 16, 20}) {
      for (int64_t S : {1, 13, 100}) {
        const int64_t ldq1 = C1 + 1, ldq2 = C2 + 2, lds = S + 3;
        const auto q1 = Random(M * ldq1, seed++), q2 = Random(M * ldq2, seed++);
        const auto k1 = Random(S * C1, seed++), k2 = Random(S * C2 + 1, seed++), init = Random(M * lds, seed++);
        std::vector<float> ref = init, fast = init;
        SetLinearKernel(LinearKernel::kReference);
        MultiQueryScoresTwoPart(q1.data(), ldq1, k1.data(), C1, q2.data(), ldq2, k2.data(), C2, M, S, ref.data(), lds);
        SetLinearKernel(LinearKernel::kAvx2);
        MultiQueryScoresTwoPart(q1.data(), ldq1, k1.data(), C1, q2.data(), ldq2, k2.data(), C2, M, S, fast.data(), lds);
        const std::string what = "C1=" + std::to_string(C1) + " C2=" + std::to_string(C2) + " M=" + std::to_string(M) +
                                 " S=" + std::to_string(S);
        ForEachScore(fast, init, M, S, lds, what, [&](int64_t m, int64_t s, size_t i) {
          double mag = 0.0, exact = 0.0;
          for (int64_t c = 0; c < C1; ++c) {
            mag += std::fabs(double(q1[m * ldq1 + c]) * k1[s * C1 + c]);
            exact += double(q1[m * ldq1 + c]) * k1[s * C1 + c];
          }
          for (int64_t c = 0; c < C2; ++c) {
            mag += std::fabs(double(q2[m * ldq2 + c]) * k2[s * C2 + c]);
            exact += double(q2[m * ldq2 + c]) * k2[s * C2 + c];
          }
          ExpectWithinSumBound(fast[i], ref[i], mag, C1 + C2 + 1, what);
          ExpectWithinSumBound(fast[i], static_cast<float>(exact), mag, C1 + C2 + 1, what + " (exact)");
        });
      }
    }
  }
}

TEST_F(MultiQueryTest, WeightedSumMatchesTheReference) {
  uint32_t seed = 100;
  for (int64_t C : {256, 40, 37}) {
    for (int64_t M : {1, 2, 3, 4, 6, 7}) {
      for (int64_t S : {1, 13, 100}) {
        const int64_t ldp = S + 5;
        const auto p = Random(M * ldp, seed++), vals = Random(S * C, seed++);
        std::vector<float> ref(static_cast<size_t>(M * C), 7.0f), fast = ref;
        SetLinearKernel(LinearKernel::kReference);
        MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, ref.data());
        SetLinearKernel(LinearKernel::kAvx2);
        MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, fast.data());
        const std::string what = "C=" + std::to_string(C) + " M=" + std::to_string(M) + " S=" + std::to_string(S);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t c = 0; c < C; ++c) {
            double mag = 0;
            for (int64_t s = 0; s < S; ++s) mag += std::fabs(double(p[m * ldp + s]) * vals[s * C + c]);
            ExpectWithinSumBound(fast[m * C + c], ref[m * C + c], mag, S, what);
          }
        }
      }
    }
  }
}

// The AVX2 weighted sum walks the rows in blocks (16 KB of them: 16 rows at C = 256, 64 at
// C = 64), each output carried from block to block: every output element must still be one fma
// chain over the rows in order, from zero, for row counts around and across the blocks and
// every query tile, and the last C % 8 columns too.
TEST_F(MultiQueryTest, WeightedSumIsOneFmaChainOverTheRows) {
  SetLinearKernel(LinearKernel::kAvx2);
  uint32_t seed = 900;
  for (int64_t C : {256, 64, 37}) {
    for (int64_t M : {1, 2, 3, 5, 12}) {
      for (int64_t S : {0, 1, 15, 16, 17, 64, 65, 100, 300}) {
        const int64_t ldp = S + 3;
        const auto p = Random(M * ldp, seed++), vals = Random(S * C, seed++);
        std::vector<float> got(static_cast<size_t>(M * C + 4), -7.0f);
        MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, got.data());
        const std::string what = "C=" + std::to_string(C) + " M=" + std::to_string(M) + " S=" + std::to_string(S);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t c = 0; c < C; ++c) {
            float want = 0.0f;
            for (int64_t s = 0; s < S; ++s) want = std::fma(p[m * ldp + s], vals[s * C + c], want);
            ASSERT_EQ(got[m * C + c], want) << what << " m=" << m << " c=" << c;
          }
        }
        for (size_t i = M * C; i < got.size(); ++i) ASSERT_EQ(got[i], -7.0f) << what << ": wrote past M x C";
      }
    }
  }
  // No columns: nothing to write (and no block of zero-width rows to size).
  const auto p = Random(12, seed), vals = Random(4, seed + 1);
  std::vector<float> none(4, -7.0f);
  MultiQueryWeightedSum(p.data(), 3, 4, vals.data(), 4, 0, none.data());
  EXPECT_EQ(none, std::vector<float>(4, -7.0f));
}

// The avx512 family's multi-query products give the AVX2 bits: every score and every output
// element (and the padding past them, untouched) equal, over every query count below 16 (the
// scores' query pairs, their six-pair tiles and a lone last query; the weighted sum's 6-query
// tiles), key counts around the 4-key quads, widths with a 32-column remainder of 16 or 8, a
// C % 8 tail or rows too wide for the pairs (those go to AVX2), 130 rows of 1000 (two of the
// weighted sum's 256 KB row blocks), and both score forms with accumulate on and off.
TEST_F(MultiQueryTest, Avx512GivesTheAvx2Bits) {
  if (!GetCpuFeatures().HasAvx512VnniSet()) GTEST_SKIP() << "CPU lacks AVX-512 VNNI";
  uint32_t seed = 500;
  for (int64_t C : {256, 48, 40, 37, 1000}) {
    for (int64_t C2 : {32, 8, 5}) {
      for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}) {
        for (int64_t S : {1, 4, 7, 13, 130}) {
          const int64_t ldq = C + 3, ldq2 = C2 + 1, lds = S + 2;
          const auto q = Random(M * ldq, seed++), q2 = Random(M * ldq2, seed++), keys = Random(S * C, seed++);
          const auto keys2 = Random(S * C2, seed++), init = Random(M * lds, seed++), p = Random(M * lds, seed++);
          const std::string what = "C=" + std::to_string(C) + " C2=" + std::to_string(C2) + " M=" + std::to_string(M) +
                                   " S=" + std::to_string(S);
          std::vector<float> got[2][4];  // [avx2, avx512][one part, accumulated, two parts, weighted sum]
          for (int k = 0; k < 2; ++k) {
            SetLinearKernel(k == 0 ? LinearKernel::kAvx2 : LinearKernel::kAvx512);
            got[k][0] = got[k][1] = got[k][2] = init;
            got[k][3].assign(static_cast<size_t>(M * C + 5), -7.0f);
            MultiQueryScores(q.data(), M, ldq, keys.data(), S, C, got[k][0].data(), lds, false);
            MultiQueryScores(q.data(), M, ldq, keys.data(), S, C, got[k][1].data(), lds, true);
            MultiQueryScoresTwoPart(q.data(), ldq, keys.data(), C, q2.data(), ldq2, keys2.data(), C2, M, S,
                                    got[k][2].data(), lds);
            MultiQueryWeightedSum(p.data(), M, lds, keys.data(), S, C, got[k][3].data());
          }
          ASSERT_EQ(got[1][0], got[0][0]) << "scores, " << what;
          ASSERT_EQ(got[1][1], got[0][1]) << "accumulated scores, " << what;
          ASSERT_EQ(got[1][2], got[0][2]) << "two-part scores, " << what;
          ASSERT_EQ(got[1][3], got[0][3]) << "weighted sum, " << what;
        }
      }
    }
  }
}

// Decode attention splits a lone span's heads in two groups (mla.cc's HeadGroups) trusting
// that the AVX2 and AVX-512 products give a query the same bits whatever shares its call, as
// long as the call stays on the same side of 16 queries (from 16 the scores are a GEMM): every
// split of 12 and 15 queries, and halves of 32, 40 and 128, against the whole call.
TEST_F(MultiQueryTest, QueriesSplitOnTheSameSideOfSixteenKeepTheirBits) {
  std::vector<LinearKernel> kernels = {LinearKernel::kAvx2};
  if (GetCpuFeatures().HasAvx512VnniSet()) kernels.push_back(LinearKernel::kAvx512);
  const int64_t C = 256, R = 32, S = 77;
  uint32_t seed = 700;
  for (LinearKernel k : kernels) {
    SetLinearKernel(k);
    for (int64_t M : {12, 15, 32, 40, 128}) {
      const auto q = Random(M * C, seed++), q2 = Random(M * R, seed++), keys = Random(S * C, seed++);
      const auto keys2 = Random(S * R, seed++);
      std::vector<float> scores(M * S), sums(M * C);
      MultiQueryScoresTwoPart(q.data(), C, keys.data(), C, q2.data(), R, keys2.data(), R, M, S, scores.data(), S);
      MultiQueryWeightedSum(scores.data(), M, S, keys.data(), S, C, sums.data());
      std::vector<int64_t> cuts;
      if (M < 16) {
        for (int64_t a = 1; a < M; ++a) cuts.push_back(a);
      } else {
        cuts.push_back(M / 2);
      }
      for (int64_t a : cuts) {
        std::vector<float> split_scores(M * S), split_sums(M * C);
        for (auto [m0, m1] : {std::pair<int64_t, int64_t>{0, a}, {a, M}}) {
          MultiQueryScoresTwoPart(q.data() + m0 * C, C, keys.data(), C, q2.data() + m0 * R, R, keys2.data(), R, m1 - m0,
                                  S, split_scores.data() + m0 * S, S);
          MultiQueryWeightedSum(scores.data() + m0 * S, m1 - m0, S, keys.data(), S, C, split_sums.data() + m0 * C);
        }
        const std::string what = "kernel " + std::to_string(static_cast<int>(k)) + ", " + std::to_string(M) +
                                 " queries cut at " + std::to_string(a);
        ASSERT_EQ(split_scores, scores) << what;
        ASSERT_EQ(split_sums, sums) << what;
      }
    }
  }
}

// Decode over a bf16 cache hands the kernels its rows as stored (bfloat16 bits): the two-part
// scores and the weighted sum must give the bits the float32 products give over those rows
// widened (here by the shift itself, not by WidenBf16, whose AVX-512 form shares the kernels'
// widening), on every kernel family: query counts on both sides of 16 (from 16 the scores are
// the GEMM, over the keys as BF16 weight rows), keys around the four-key tiles, widths around the 8-, 16- and
// 32-column steps, with a C % 8 tail, and too wide for the AVX-512 query pairs (1000 + 32).
TEST_F(MultiQueryTest, Bf16RowsGiveTheBitsOfTheirWidenedRows) {
  const auto to_bf16 = [](const std::vector<float>& v) {
    std::vector<uint16_t> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBF16(v[i]);
    return out;
  };
  const auto widen = [](const std::vector<uint16_t>& v) {
    std::vector<float> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const uint32_t bits = static_cast<uint32_t>(v[i]) << 16;
      std::memcpy(&out[i], &bits, 4);
    }
    return out;
  };
  uint32_t seed = 900;
  for (const LinearKernel k : {LinearKernel::kReference, LinearKernel::kAvx2, LinearKernel::kAvx512}) {
    if (k == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) continue;
    SetLinearKernel(k);
    for (int64_t C : {256, 48, 40, 37, 1000}) {
      for (int64_t C2 : {32, 8, 5}) {
        for (int64_t M : {1, 2, 3, 5, 6, 7, 12, 13, 16, 20}) {
          for (int64_t S : {1, 4, 7, 13, 130, 300}) {  // 300 rows of 1000: three of AVX-512's row blocks
            const int64_t ldq = C + 3, ldq2 = C2 + 1, lds = S + 2;
            const auto q = Random(M * ldq, seed++), q2 = Random(M * ldq2, seed++), p = Random(M * lds, seed++);
            const auto keys = to_bf16(Random(S * C, seed++)), keys2 = to_bf16(Random(S * C2, seed++));
            const auto wide = widen(keys), wide2 = widen(keys2);
            const std::string what = std::string(LinearKernelName(k)) + " C=" + std::to_string(C) +
                                     " C2=" + std::to_string(C2) + " M=" + std::to_string(M) + " S=" + std::to_string(S);
            std::vector<float> want(static_cast<size_t>(M * lds), -3.0f), got = want;
            MultiQueryScoresTwoPart(q.data(), ldq, wide.data(), C, q2.data(), ldq2, wide2.data(), C2, M, S, want.data(),
                                    lds);
            MultiQueryScoresTwoPart(q.data(), ldq, keys.data(), C, q2.data(), ldq2, keys2.data(), C2, M, S, got.data(),
                                    lds);
            ASSERT_EQ(got, want) << "two-part scores, " << what;
            std::vector<float> want_sum(static_cast<size_t>(M * C + 5), -7.0f), got_sum = want_sum;
            MultiQueryWeightedSum(p.data(), M, lds, wide.data(), S, C, want_sum.data());
            MultiQueryWeightedSum(p.data(), M, lds, keys.data(), S, C, got_sum.data());
            ASSERT_EQ(got_sum, want_sum) << "weighted sum, " << what;
          }
        }
      }
    }
  }
}

// Under --activations bf16, decode's scores over a bf16 cache take the queries rounded to bf16
// (vdpbf16ps, linear_kernels.h's chain): every family gives the twin's bits through
// MultiQueryScoresTwoPart (the AVX-512 BF16 kernel where the CPU has it, the twin elsewhere),
// and the kernel does when called directly, for query counts around its tiles of six pairs and
// groups of sixteen, key counts around its four-key steps and blocks of 256 keys, widths of
// whole 16-column steps and of a last 8 (the goldens' rope part; one too wide for its pairs:
// the twin's), and values that exercise the flushing: subnormal bf16 keys (read as zero),
// float32 subnormal queries (rounded to zero), and sums below the normal range. Under the
// default activations the same call keeps the float32 queries (the widened rows' bits, above).
TEST_F(MultiQueryTest, Bf16QueriesOverABf16CacheGiveTheTwinsBits) {
  // Mostly N(0, 1); every tenth a subnormal bf16, every tenth after it a value near 2^-120
  // (its products with the small queries below are subnormal).
  const auto keys_of = [](int64_t n, uint32_t seed) {
    const std::vector<float> v = Random(n, seed);
    std::vector<uint16_t> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      out[i] = F32ToBF16(v[i]);
      if (i % 10 == 3) out[i] = static_cast<uint16_t>((v[i] < 0 ? 0x8000 : 0) | (1 + i % 0x7f));
      if (i % 10 == 7) out[i] = F32ToBF16(v[i] * 0x1p-120f);
    }
    return out;
  };
  const auto queries_of = [](int64_t n, uint32_t seed) {
    std::vector<float> v = Random(n, seed);
    for (int64_t i = 0; i < n; ++i) {
      if (i % 11 == 5) v[i] *= 0x1p-130f;  // a float32 subnormal: rounds to zero
      if (i % 11 == 8) v[i] *= 0x1p-20f;
    }
    return v;
  };
  const bool bf16_cpu = GetCpuFeatures().HasAvx512Bf16Set();
  // Where flushing decides the sum: four queries over five keys of 32 + 16 columns, each query
  // live in every fourth column. Query 0's 2^60 meets subnormal keys (read as zero: else sums
  // near 2^-70); query 1's +-2^-130, a float32 subnormal, rounds to zero (else 2^-30 against keys
  // of 2^100); query 2's 2^-70 meets 2^-70 (products below the normal range, flushed); query 3's
  // 2^60 meets 2^-100 (2^-40 each, kept).
  {
    constexpr int64_t C1 = 32, C2 = 16, M = 4, S = 5;
    const float live[M] = {0x1p60f, 0x1p-130f, 0x1p-70f, 0x1p60f};
    std::vector<float> q(M * C1, 0.0f), q2(M * C2, 0.0f);
    std::vector<uint16_t> keys(S * C1), keys2(S * C2);
    for (int64_t c = 0; c < C1 + C2; ++c) {
      const int64_t m = c % M;
      (c < C1 ? q[m * C1 + c] : q2[m * C2 + c - C1]) = (c % 8 == 1 ? -1 : 1) * live[m];
      for (int64_t k = 0; k < S; ++k) {
        const uint16_t key = m == 0   ? static_cast<uint16_t>(1 + (7 * k + c) % 0x7f)
                             : m == 1 ? F32ToBF16(0x1p100f)
                             : m == 2 ? F32ToBF16(0x1p-70f)
                                      : F32ToBF16(0x1p-100f);
        (c < C1 ? keys[k * C1 + c] : keys2[k * C2 + c - C1]) = key;
      }
    }
    std::vector<float> want(M * S), got(M * S);
    cpu::Bf16QueryScoresReference(q.data(), C1, keys.data(), C1, q2.data(), C2, keys2.data(), C2, M, S, want.data(), S);
    for (int64_t k = 0; k < S; ++k) {
      EXPECT_EQ(want[k], 0.0f) << "query 0, key " << k << ": subnormal keys read as zero";
      EXPECT_EQ(want[S + k], 0.0f) << "query 1, key " << k << ": float32 subnormals round to zero";
      EXPECT_EQ(want[2 * S + k], 0.0f) << "query 2, key " << k << ": subnormal sums flushed";
      EXPECT_EQ(want[3 * S + k], 12 * 0x1p-40f) << "query 3, key " << k << ": normal products kept";
    }
    if (bf16_cpu) {
      cpu::Bf16QueryScoresAvx512(q.data(), C1, keys.data(), C1, q2.data(), C2, keys2.data(), C2, M, S, got.data(), S);
      EXPECT_TRUE(SameBits(got, want)) << "AVX-512 BF16 kernel, the flushing cases";
    }
  }
  uint32_t seed = 4200;
  for (const auto [C1, C2] : {std::pair<int64_t, int64_t>{256, 32}, {16, 16}, {512, 64}, {48, 0}, {1024, 16},
                              {32, 8}, {24, 8}, {8, 40}}) {
    for (int64_t M : {1, 2, 3, 5, 6, 7, 12, 13, 16, 17, 33}) {
      for (int64_t S : {1, 3, 4, 5, 8, 13, 130, 517}) {  // 517: two blocks of 256 keys and a tail
        const int64_t ldq = C1 + 3, ldq2 = C2 + 1, lds = S + 2;
        const auto q = queries_of(M * ldq, seed++), q2 = queries_of(M * ldq2, seed++);
        const auto keys = keys_of(S * C1, seed++), keys2 = keys_of(S * C2, seed++);
        const std::string what = "C1=" + std::to_string(C1) + " C2=" + std::to_string(C2) + " M=" + std::to_string(M) +
                                 " S=" + std::to_string(S);
        std::vector<float> want(static_cast<size_t>(M * lds), -3.0f);
        cpu::Bf16QueryScoresReference(q.data(), ldq, keys.data(), C1, q2.data(), ldq2, keys2.data(), C2, M, S,
                                      want.data(), lds);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t s = S; s < lds; ++s) ASSERT_EQ(want[m * lds + s], -3.0f) << "twin wrote past S, " << what;
        if (bf16_cpu) {
          std::vector<float> got(want.size(), -3.0f);
          cpu::Bf16QueryScoresAvx512(q.data(), ldq, keys.data(), C1, q2.data(), ldq2, keys2.data(), C2, M, S,
                                     got.data(), lds);
          ASSERT_TRUE(SameBits(got, want)) << "AVX-512 BF16 kernel, " << what;
        }
        for (const LinearKernel k : {LinearKernel::kReference, LinearKernel::kAvx2, LinearKernel::kAvx512}) {
          if (k == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) continue;
          SetLinearKernel(k);
          SetLinearActivations(LinearActivations::kBf16);
          std::vector<float> got(want.size(), -3.0f);
          MultiQueryScoresTwoPart(q.data(), ldq, keys.data(), C1, q2.data(), ldq2, keys2.data(), C2, M, S, got.data(),
                                  lds);
          SetLinearActivations(LinearActivations::kInt8);
          ASSERT_TRUE(SameBits(got, want)) << LinearKernelName(k) << " under bf16 activations, " << what;
          if (M == 5 && S == 13) {  // the default activations: the float32 queries, not these
            std::vector<float> plain(want.size(), -3.0f);
            MultiQueryScoresTwoPart(q.data(), ldq, keys.data(), C1, q2.data(), ldq2, keys2.data(), C2, M, S,
                                    plain.data(), lds);
            EXPECT_FALSE(SameBits(plain, want)) << LinearKernelName(k) << " under int8 activations, " << what;
          }
        }
      }
    }
  }
}

// The weighted sums of the same steps take the probabilities rounded to bf16 (vdpbf16ps over
// pairs of rows): the kernel and every family through MultiQueryWeightedSum give the twin's
// bits, for query counts around the tiles of six, rows odd and even and across the kernel's
// blocks of 512, widths of whole 32- and 16-column steps, and subnormal values; widths of
// 8-column steps and the default activations keep the float32 sums; the twin is within
// float32's summation bound of the rounded values' sums.
TEST_F(MultiQueryTest, Bf16ProbabilitiesOverABf16CacheGiveTheTwinsBits) {
  const bool bf16_cpu = GetCpuFeatures().HasAvx512Bf16Set();
  uint32_t seed = 5100;
  for (int64_t C : {256, 16, 48, 512, 40}) {
    for (int64_t M : {1, 2, 3, 5, 6, 7, 12, 13}) {
      for (int64_t S : {1, 2, 3, 5, 128, 131, 513, 1100}) {
        if (C == 512 && S > 200 && M > 3) continue;  // the twin is slow; these shapes are covered at smaller ones
        const int64_t ldp = S + 3;
        std::vector<float> p = Random(M * ldp, seed++);
        for (int64_t i = 0; i < M * ldp; ++i) {
          p[i] = std::fabs(p[i]) * 0.01f;  // softmax-like weights, some zero and some tiny
          if (i % 13 == 4) p[i] = 0.0f;
          if (i % 13 == 9) p[i] *= 0x1p-120f;
        }
        const std::vector<float> v = Random(S * C, seed++);
        std::vector<uint16_t> vals(static_cast<size_t>(S * C));
        for (int64_t i = 0; i < S * C; ++i)
          vals[i] = i % 17 == 5 ? static_cast<uint16_t>(1 + i % 0x7f) : F32ToBF16(v[i]);
        const std::string what = "C=" + std::to_string(C) + " M=" + std::to_string(M) + " S=" + std::to_string(S);
        std::vector<float> want(static_cast<size_t>(M * C + 5), -7.0f);
        cpu::Bf16WeightedSumReference(p.data(), M, ldp, vals.data(), S, C, want.data());
        for (int i = 0; i < 5; ++i) ASSERT_EQ(want[M * C + i], -7.0f) << "twin wrote past M x C, " << what;
        if (M == 5) {
          for (int64_t m = 0; m < M; ++m)
            for (int64_t c = 0; c < C; c += 7) {
              double exact = 0, magnitude = 0;
              for (int64_t s = 0; s < S; ++s) {
                const double x = Bf16Operand(cpu::RoundToBf16(p[m * ldp + s])) * Bf16Operand(vals[s * C + c]);
                exact += x;
                magnitude += std::fabs(x);
              }
              ExpectWithinSumBound(want[m * C + c], static_cast<float>(exact), magnitude, S, what);
            }
        }
        const bool takes = C % 16 == 0;
        if (bf16_cpu && takes) {
          std::vector<float> got(want.size(), -7.0f);
          cpu::Bf16WeightedSumAvx512(p.data(), M, ldp, vals.data(), S, C, got.data());
          ASSERT_TRUE(SameBits(got, want)) << "AVX-512 BF16 kernel, " << what;
        }
        for (const LinearKernel k : {LinearKernel::kReference, LinearKernel::kAvx2, LinearKernel::kAvx512}) {
          if (k == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) continue;
          SetLinearKernel(k);
          std::vector<float> plain(want.size(), -7.0f), got = plain;
          MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, plain.data());
          SetLinearActivations(LinearActivations::kBf16);
          MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, got.data());
          SetLinearActivations(LinearActivations::kInt8);
          if (takes) {
            ASSERT_TRUE(SameBits(got, want)) << LinearKernelName(k) << " under bf16 activations, " << what;
            if (S > 100) EXPECT_FALSE(SameBits(plain, want)) << LinearKernelName(k) << " under int8 activations, " << what;
          } else {
            ASSERT_TRUE(SameBits(got, plain)) << LinearKernelName(k) << ", 8-column steps keep float32, " << what;
          }
        }
      }
    }
  }
}

// The twin is the dot product of the rounded values: each score within float32's summation
// bound of the exact sum of RoundToBf16(q) · key over both parts (bf16 subnormals as zero).
TEST_F(MultiQueryTest, Bf16QueryTwinIsTheDotProductOfTheRoundedValues) {
  uint32_t seed = 4700;
  for (const auto [C1, C2] : {std::pair<int64_t, int64_t>{256, 32}, {16, 0}, {32, 8}}) {
    const int64_t M = 7, S = 9;
    const auto q = Random(M * C1, seed++), q2 = Random(M * C2, seed++);
    std::vector<uint16_t> keys(static_cast<size_t>(S * C1)), keys2(static_cast<size_t>(S * C2));
    const auto k1 = Random(S * C1, seed++), k2 = Random(S * C2, seed++);
    for (size_t i = 0; i < keys.size(); ++i) keys[i] = F32ToBF16(k1[i]);
    for (size_t i = 0; i < keys2.size(); ++i) keys2[i] = F32ToBF16(k2[i]);
    std::vector<float> got(static_cast<size_t>(M * S));
    cpu::Bf16QueryScoresReference(q.data(), C1, keys.data(), C1, q2.data(), C2, keys2.data(), C2, M, S, got.data(), S);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t s = 0; s < S; ++s) {
        double exact = 0, magnitude = 0;
        const auto add = [&](const float* qp, const uint16_t* kp, int64_t C) {
          for (int64_t c = 0; c < C; ++c) {
            const double p = Bf16Operand(cpu::RoundToBf16(qp[c])) * Bf16Operand(kp[c]);
            exact += p;
            magnitude += std::fabs(p);
          }
        };
        add(q.data() + m * C1, keys.data() + s * C1, C1);
        add(q2.data() + m * C2, keys2.data() + s * C2, C2);
        ExpectWithinSumBound(got[m * S + s], static_cast<float>(exact), magnitude, C1 + C2,
                             "m=" + std::to_string(m) + " s=" + std::to_string(s));
      }
    }
  }
}

// The products over a bf16 cache that take bf16 queries or probabilities add their FLOPs to the
// counters' bf16 share (their caller counts the total: CountFlops), so that `dsv3 bench` weighs
// them against the vdpbf16ps peak; under other activations, and at widths that keep float32
// (a C % 16 tail for the weighted sum), they add nothing.
TEST_F(MultiQueryTest, Bf16ProductsCountAsBf16Flops) {
  const int64_t M = 3, S = 5, C1 = 32, C2 = 8;
  const auto q = Random(M * C1, 90), q2 = Random(M * C2, 91), p = Random(M * S, 92);
  const std::vector<uint16_t> keys(S * C1, 0x3f80), keys2(S * C2, 0x3f80), vals(S * 40, 0x3f80);
  std::vector<float> scores(M * S), out(M * 40);
  LinearCounters counters;
  SetLinearCounters(&counters);
  const auto run = [&](int64_t C) {
    counters.Reset();
    MultiQueryScoresTwoPart(q.data(), C1, keys.data(), C1, q2.data(), C2, keys2.data(), C2, M, S, scores.data(), S);
    MultiQueryWeightedSum(p.data(), M, S, vals.data(), S, C, out.data());
    return counters.Read();
  };
  SetLinearActivations(LinearActivations::kBf16);
  LinearCounters::Totals t = run(32);
  EXPECT_EQ(t.bf16_flops, uint64_t{2 * M * S * (C1 + C2) + 2 * M * S * 32});
  EXPECT_EQ(t.flops, 0u) << "the caller counts the total";
  t = run(40);
  EXPECT_EQ(t.bf16_flops, uint64_t{2 * M * S * (C1 + C2)}) << "C = 40 keeps float32 in the weighted sum";
  SetLinearActivations(LinearActivations::kInt8);
  t = run(32);
  EXPECT_EQ(t.bf16_flops, 0u);
  SetLinearCounters(nullptr);
}

// Decode's absorbed attention reads kv_b as stored: rows of a weight, converted to float32,
// must give the bits the multi-query products give over DequantizeRows' float32 rows, for
// every format, row counts around the 4-row score tiles, widths around the 32-column value
// tiles (and one with a C % 8 tail, which the scalar DequantizeRows converts), rows starting inside
// the matrix, and the reference kernels too. The AVX2 loops of the scaled formats read scales
// into a table of 2048 and take the groups in windows (512 for the scores' four rows, 256 for
// the weighted sum): C = 2048 gives INT4 and INT8 blocks of 32 64 groups a row, so the weighted
// sum takes the 64 rows in blocks of 32 and carries the sums across; C = 2344 gives FP8 blocks
// of 8 a last window of 37 groups, carried across blocks of rows and ending in an 8-column
// tail; C = 16416 gives INT4 g32 513 groups and FP8 blocks of 8 2052, several windows for both.
// FP8's AVX-512 scores run in both forms (with VBMI's byte permutes in groups of 32-column
// steps, and without: groups of 16, or a scale of 300), one FP8 weight holds every byte value
// but NaN's, and rows [27, 37) pair rows across a block of rows (FP8 32: rows 31 and 32).
// Three and six queries in one call (a decode batch's sequences) give each query those bits.
TEST_F(MultiQueryTest, WeightRowsMatchTheProductsOverDequantizedRows) {
  using testing::OwnedWeight;
  int fp8_forms = 0;  // FP8 score calls with byte permutes
  for (int64_t C : {256, 288, 40, 83, 2048, 2344, 16416}) {
    std::vector<std::pair<std::string, OwnedWeight>> weights;
    weights.emplace_back("F32", testing::MakeWeight(DType::kF32, 70, C, 1));
    weights.emplace_back("BF16", testing::MakeWeight(DType::kBF16, 70, C, 2));
    weights.emplace_back("F16", testing::MakeWeight(DType::kF16, 70, C, 3));
    weights.emplace_back("F8_E4M3 128", testing::MakeWeight(DType::kF8E4M3, 70, C, 4, 128));
    weights.emplace_back("F8_E4M3 8", testing::MakeWeight(DType::kF8E4M3, 70, C, 5, 8));
    weights.emplace_back("F8_E4M3 16", testing::MakeWeight(DType::kF8E4M3, 70, C, 12, 16));
    // A scale past 2^8 (its scale · 2^120 overflows: the permute form steps aside).
    weights.emplace_back("F8_E4M3 128, scale 300", testing::MakeWeight(DType::kF8E4M3, 70, C, 13, 128));
    weights.back().second.scale[0] = 300.0f;
    weights.emplace_back("F8_E4M3 32, every byte", testing::MakeWeight(DType::kF8E4M3, 70, C, 11, 32));
    for (int64_t i = 0; i < 70 * C; ++i) {  // every byte but NaN's (0x7f, 0xff)
      const auto byte = static_cast<uint8_t>((i * 7 + i / C) % 256);
      weights.back().second.bytes[static_cast<size_t>(i)] = (byte & 0x7f) == 0x7f ? 0 : byte;
    }
    if (C % 32 == 0) {  // the integer formats' group widths
      weights.emplace_back("int8 per channel", testing::MakeIntWeight(false, 70, C, 6, C, true, 1));
      weights.emplace_back("int8 blocks", testing::MakeIntWeight(false, 70, C, 7, 32, true));
      weights.emplace_back("int4 g32", testing::MakeIntWeight(true, 70, C, 8, 32, true));
      weights.emplace_back("int4 g64 zero points", testing::MakeIntWeight(true, 70, C, 9, 64, false));
    }
    if (C % 8 == 0 && C % 16 != 0) weights.emplace_back("int8 per channel", testing::MakeIntWeight(false, 70, C, 10, C, true, 1));
    for (LinearKernel kernel : {LinearKernel::kAvx512, LinearKernel::kAvx2, LinearKernel::kReference}) {
      SetLinearKernel(kernel);
      for (const auto& [name, w] : weights) {
        for (const auto& [r0, S] : std::vector<std::pair<int64_t, int64_t>>{{0, 64}, {3, 7}, {64, 6}, {10, 1}, {27, 10}}) {
          const std::string what = name + " C=" + std::to_string(C) + " rows [" + std::to_string(r0) + ", +" +
                                   std::to_string(S) + ") " + LinearKernelName(kernel);
          std::vector<float> rows(static_cast<size_t>(S * C));
          DequantizeRows(w.m, r0, r0 + S, rows.data());
          const auto q = Random(C, 20), p = Random(S, 21);
          std::vector<float> want(static_cast<size_t>(S)), got(want.size(), -7.0f);
          MultiQueryScores(q.data(), 1, C, rows.data(), S, C, want.data(), S, false);
          WeightRowScores(q.data(), 1, C, w.m, r0, S, got.data(), S);
          ASSERT_EQ(got, want) << "scores, " << what;
          // FP8's scores in both AVX-512 forms (with VBMI's byte permutes, and without), called
          // directly: Linear's choice runs only one of them on a given CPU.
          if (kernel == LinearKernel::kAvx512 && w.m.w.dtype == DType::kF8E4M3 && GetCpuFeatures().HasAvx512VnniSet()) {
            for (bool byte_permutes : {false, true}) {
              if (byte_permutes && !GetCpuFeatures().avx512_vbmi) continue;
              std::vector<float> form(want.size(), -7.0f);
              // (False for the weights these kernels leave to AVX2: C % 8 != 0.)
              if (!cpu::WeightRowScoresAvx512(q.data(), 1, 0, testing::Fp8Raw(w.m), r0, S, form.data(), 0, byte_permutes))
                continue;
              ASSERT_EQ(form, want) << "scores, " << what << (byte_permutes ? ", byte permutes" : ", no byte permutes");
              fp8_forms += byte_permutes ? 1 : 0;
            }
          }
          std::vector<float> want_sum(static_cast<size_t>(C)), got_sum(want_sum.size(), -7.0f);
          MultiQueryWeightedSum(p.data(), 1, S, rows.data(), S, C, want_sum.data());
          WeightRowsWeightedSum(p.data(), 1, S, w.m, r0, S, got_sum.data(), C);
          ASSERT_EQ(got_sum, want_sum) << "weighted sum, " << what;
          // M queries in one call (strided, a pass of four and one of two or three): each one's
          // bits as its own call's, nothing written between them.
          for (int64_t M : {3, 6}) {
            const int64_t ldq = C + 3, lds = S + 2, ldp = S + 1, ldo = C + 5;
            const auto qs = Random(M * ldq, 22), ps = Random(M * ldp, 23);
            std::vector<float> scores(static_cast<size_t>(M * lds), -7.0f), sums(static_cast<size_t>(M * ldo), -7.0f);
            WeightRowScores(qs.data(), M, ldq, w.m, r0, S, scores.data(), lds);
            WeightRowsWeightedSum(ps.data(), M, ldp, w.m, r0, S, sums.data(), ldo);
            for (int64_t m = 0; m < M; ++m) {
              std::vector<float> one(static_cast<size_t>(S)), one_sum(static_cast<size_t>(C));
              MultiQueryScores(qs.data() + m * ldq, 1, C, rows.data(), S, C, one.data(), S, false);
              MultiQueryWeightedSum(ps.data() + m * ldp, 1, S, rows.data(), S, C, one_sum.data());
              for (int64_t i = 0; i < lds; ++i)
                ASSERT_EQ(scores[m * lds + i], i < S ? one[i] : -7.0f) << "scores, query " << m << " of " << M << ", " << what;
              for (int64_t i = 0; i < ldo; ++i)
                ASSERT_EQ(sums[m * ldo + i], i < C ? one_sum[i] : -7.0f) << "sum, query " << m << " of " << M << ", " << what;
            }
          }
        }
      }
    }
  }
  if (GetCpuFeatures().HasAvx512VnniSet() && GetCpuFeatures().avx512_vbmi) EXPECT_GT(fp8_forms, 0);
}

// Floats in [-87.25, -0.25] at a fine step, plus a few positive ones: within 3 ulp of
// std::exp (measured as relative error, 3 * 2^-23), in every position of a row (the last n % 8
// go through a padded vector). exp(0) = 1 exactly, -inf gives 0, NaN stays NaN, and far below
// the smallest normal float gives 0. The sum is the sum of the values written.
TEST_F(MultiQueryTest, ExpShiftedSumIsWithinThreeUlpOfStdExp) {
  SetLinearKernel(LinearKernel::kAvx2);
  std::vector<float> in;
  for (float v = -87.0f; v <= 0.0f; v += 0.00731f) in.push_back(v);  // shifted: down to -87.25
  for (float v : {0.0f, 1e-8f, -1e-8f, 0.5f, 3.0f, 20.0f, -0.3465736f, -0.6931472f}) in.push_back(v);
  for (int64_t n : {static_cast<int64_t>(in.size()), int64_t{13}, int64_t{5}}) {
    std::vector<float> x(in.begin(), in.begin() + n);
    const float shift = 0.25f;
    const float sum = ExpShiftedSum(x.data(), n, shift);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float arg = in[i] - shift;  // rounded to float as the kernel's argument is
      const double want = std::exp(static_cast<double>(arg));
      ASSERT_LE(std::fabs(x[i] - want), 3 * std::ldexp(1.0, -23) * want) << "x=" << in[i] << " n=" << n;
      total += x[i];
    }
    EXPECT_NEAR(sum, total, 1e-6 * total) << n;
  }
  std::vector<float> special = {0.0f, -INFINITY, NAN, -200.0f, -1e30f, 0.0f, -87.0f, -88.5f, 1.0f};
  const float sum = ExpShiftedSum(special.data(), static_cast<int64_t>(special.size()), 0.0f);
  EXPECT_EQ(special[0], 1.0f);
  EXPECT_EQ(special[1], 0.0f);
  EXPECT_TRUE(std::isnan(special[2]));
  EXPECT_EQ(special[3], 0.0f);
  EXPECT_EQ(special[4], 0.0f);
  EXPECT_EQ(special[5], 1.0f);
  EXPECT_NEAR(special[6], std::exp(-87.0), 3e-7 * std::exp(-87.0));
  EXPECT_LE(special[7], std::exp(-88.5) * 1.01);  // below the normal range: tiny or 0
  EXPECT_NEAR(special[8], std::exp(1.0), 3e-7 * std::exp(1.0));
  EXPECT_TRUE(std::isnan(sum));
}

// A bf16 latent cache's rows widen to float32 exactly (every value, NaN payloads and
// subnormals included) on the AVX-512, AVX2 and scalar paths, for lengths around their steps.
// The avx512 family's softmax exponentials give the AVX2 bits, values and sum, and so do its
// whole softmax and its log-sum-exp (eval's log-probabilities): every length around the 8- and 16-lane steps (a tail of a few lanes, of exactly
// eight, of more than eight), arguments over the whole range and past both ends, -inf, NaN and
// values whose exp overflows.
TEST_F(MultiQueryTest, Avx512ExpShiftedSumAndSoftmaxGiveTheAvx2Bits) {
  if (!GetCpuFeatures().HasAvx512VnniSet()) GTEST_SKIP() << "CPU lacks AVX-512 VNNI";
  // Softmax-like arguments (~ -9 .. 3: sums of many comparable terms, whose order shows in
  // their bits), then a range past both ends of exp's with the special values.
  std::vector<float> in = Random(600, 31);
  for (size_t i = 0; i < 300; ++i) in[i] = in[i] * 2.0f - 3.0f;
  for (size_t i = 300; i < in.size(); ++i) in[i] = in[i] * 40.0f - 30.0f;  // ~ -150 .. 90
  const float specials[] = {-INFINITY, 0.0f, -87.3365f, -87.34f, 88.4f, 89.5f, 200.0f, -1e30f, 1e-30f};
  for (size_t i = 0; i < std::size(specials); ++i) in[300 + 7 * i + 3] = specials[i];
  const auto bits = [](const std::vector<float>& v) {
    std::vector<uint32_t> b(v.size());
    std::memcpy(b.data(), v.data(), v.size() * 4);
    return b;
  };
  for (const size_t from : {size_t{0}, size_t{300}}) {
    for (const float shift : {0.0f, 0.25f, -3.0f}) {
      for (int64_t n = 0; n <= 300; n = n < 40 ? n + 1 : n + 37) {
        std::vector<float> got[2], softmax[2];
        float sum[2];
        for (int k = 0; k < 2; ++k) {
          SetLinearKernel(k == 0 ? LinearKernel::kAvx2 : LinearKernel::kAvx512);
          got[k].assign(in.begin() + from, in.begin() + from + n);
          got[k].push_back(42.0f);  // past n: untouched
          softmax[k] = got[k];
          sum[k] = ExpShiftedSum(got[k].data(), n, shift);
          SoftmaxInPlace(softmax[k].data(), n, shift + 0.5f);  // the shift as a scale
        }
        const std::string what = "from " + std::to_string(from) + " n " + std::to_string(n) + " shift " +
                                 std::to_string(shift);
        ASSERT_EQ(bits(got[1]), bits(got[0])) << what;
        ASSERT_EQ(got[1].back(), 42.0f) << what;
        ASSERT_EQ(bits(softmax[1]), bits(softmax[0])) << "softmax, " << what;
        uint32_t b0, b1;
        std::memcpy(&b0, &sum[0], 4);
        std::memcpy(&b1, &sum[1], 4);
        ASSERT_EQ(b1, b0) << "sum, " << what;
      }
    }
  }
  // LogSumExpShifted (over chunks of its own size, so lengths past one chunk too).
  std::vector<float> logits = Random(20000, 32);
  for (float& v : logits) v *= 4.0f;
  for (const int64_t n : {int64_t{1}, int64_t{8}, int64_t{9}, int64_t{16}, int64_t{23}, int64_t{4096}, int64_t{4107},
                          int64_t{20000}}) {
    double lse[2];
    for (int k = 0; k < 2; ++k) {
      SetLinearKernel(k == 0 ? LinearKernel::kAvx2 : LinearKernel::kAvx512);
      lse[k] = LogSumExpShifted(logits.data(), n, 1.5f);
    }
    uint64_t b0, b1;
    std::memcpy(&b0, &lse[0], 8);
    std::memcpy(&b1, &lse[1], 8);
    ASSERT_EQ(b1, b0) << "LogSumExpShifted, n " << n;
  }
  std::vector<float> with_nan(in.begin() + 300, in.begin() + 320);
  with_nan[11] = NAN;
  SetLinearKernel(LinearKernel::kAvx512);
  EXPECT_TRUE(std::isnan(ExpShiftedSum(with_nan.data(), 20, 0.0f)));
  EXPECT_TRUE(std::isnan(with_nan[11]));
}

TEST_F(MultiQueryTest, WidenBf16IsExactForEveryLength) {
  std::vector<uint16_t> in;
  for (uint32_t v = 0; v < 0x10000; v += 37) in.push_back(static_cast<uint16_t>(v));
  for (uint16_t v : {0x0000, 0x8000, 0x0001, 0x807f, 0x7f80, 0xff80, 0x7fc1, 0xffff, 0x3f80, 0xbf81})
    in.push_back(v);
  for (const LinearKernel k : {LinearKernel::kReference, LinearKernel::kAvx2, LinearKernel::kAvx512}) {
    if (k == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) continue;
    SetLinearKernel(k);
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{16}, int64_t{23},
                      int64_t{31}, static_cast<int64_t>(in.size())}) {
      std::vector<float> out(static_cast<size_t>(n) + 1, 42.0f);
      WidenBf16(in.data(), n, out.data());
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t want = static_cast<uint32_t>(in[i]) << 16;
        uint32_t got;
        std::memcpy(&got, &out[i], 4);
        ASSERT_EQ(got, want) << LinearKernelName(k) << " n " << n << " i " << i;
      }
      EXPECT_EQ(out[n], 42.0f) << "wrote past n " << n;
    }
  }
}

}  // namespace
}  // namespace dsv3
