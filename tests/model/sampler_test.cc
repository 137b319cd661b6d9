// ArgMax against the plain scan it replaces, on the cases where a blocked search could differ:
// ties within and across blocks, NaN anywhere, infinities, signed zeros, ragged ends. The
// temperature sampler against a walk over a fully sorted copy (its partial sorting must not
// show), and its frequencies against the probabilities top-k and top-p leave.
#include <gtest/gtest.h>

#include <limits>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "engine/kernels/ops.h"
#include "engine/model/sampler.h"

namespace dsv3 {
namespace {

int32_t PlainArgMax(const std::vector<float>& x) {
  int64_t best = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(x.size()); ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

TEST(CountNonFiniteTest, CountsNanAndInfAtAnyPlace) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t n : {1, 3, 4, 7, 8, 9, 33, 129280}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
    x[0] = std::numeric_limits<float>::max();
    x[n - 1] = -std::numeric_limits<float>::denorm_min();
    EXPECT_EQ(CountNonFinite(x.data(), n), 0) << n;
    for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
      std::vector<float> y = x;
      y[at] = nan;
      EXPECT_EQ(CountNonFinite(y.data(), n), 1) << n << " " << at;
      y[at] = -inf;
      EXPECT_EQ(CountNonFinite(y.data(), n), 1) << n << " " << at;
    }
    std::vector<float> y = x;
    y[0] = inf;
    y[n - 1] = nan;
    EXPECT_EQ(CountNonFinite(y.data(), n), n == 1 ? 1 : 2) << n;
  }
}

TEST(ArgMaxTest, MatchesThePlainScan) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(-3, 3);  // few distinct values: many ties
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{2047}, int64_t{2048}, int64_t{2049},
                    int64_t{5000}, int64_t{129280}}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = static_cast<float>(small(rng));
      std::uniform_int_distribution<int64_t> at(0, n - 1);
      switch (trial % 5) {
        case 1: x[at(rng)] = NAN; x[at(rng)] = NAN; break;
        case 2: x[0] = -INFINITY; x[at(rng)] = INFINITY; x[at(rng)] = INFINITY; break;
        case 3: for (float& v : x) v = v > 0 ? -0.0f : v == 0 ? 0.0f : v; break;  // max is +-0
        case 4: x[at(rng)] = 100.0f; x[n - 1] = 100.0f; break;  // the largest, twice
        default: break;
      }
      ASSERT_EQ(ArgMax(x.data(), n), PlainArgMax(x)) << "n " << n << " trial " << trial;
    }
  }
}

TEST(ArgMaxTest, NanFirstAndAllEqual) {
  std::vector<float> x(3000, -INFINITY);
  EXPECT_EQ(ArgMax(x.data(), 3000), 0);  // all -inf: the first
  x[2500] = NAN;
  EXPECT_EQ(ArgMax(x.data(), 3000), 0);
  x[2999] = -1.0f;
  EXPECT_EQ(ArgMax(x.data(), 3000), 2999);
  x[0] = NAN;  // the scan never leaves a NaN at 0
  EXPECT_EQ(ArgMax(x.data(), 3000), 0);
  std::vector<float> y(4100, 2.5f);
  EXPECT_EQ(ArgMax(y.data(), 4100), 0);
  y[4099] = 2.6f;
  EXPECT_EQ(ArgMax(y.data(), 4100), 4099);
}

// Sampler::Next as sampler.cc states it, with every candidate sorted up front.
class FullSortSampler {
 public:
  FullSortSampler(const SamplingParams& p, uint64_t stream) : p_(p), rng_(p.seed * 0x9E3779B97F4A7C15ull + stream) {}
  int32_t Next(const float* logits, int64_t n) {
    std::vector<float> s(static_cast<size_t>(n));
    float m = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      s[i] = logits[i] / p_.temperature;
      if (std::isnan(s[i])) s[i] = -INFINITY;
      m = std::max(m, s[i]);
    }
    if (!std::isfinite(m)) return ArgMax(logits, n);
    std::vector<float> e = s;
    ExpShiftedSum(e.data(), n, m);
    double chains[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n; ++i) chains[i < n / 4 * 4 ? i % 4 : 0] += e[i];
    double sum = (chains[0] + chains[1]) + (chains[2] + chains[3]);
    std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) c[i] = {s[i], static_cast<int32_t>(i)};
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    int64_t keep = n;
    if (p_.top_k > 0 && p_.top_k < n) {
      keep = p_.top_k;
      sum = 0;
      for (int64_t i = 0; i < keep; ++i) sum += e[c[i].second];
    }
    if (p_.top_p < 1.0f) {
      double cum = 0;
      int64_t cut = keep;
      for (int64_t i = 0; i < keep; ++i) {
        cum += e[c[i].second] / sum;
        if (cum >= p_.top_p) {
          cut = i + 1;
          break;
        }
      }
      keep = cut;
      sum = 0;
      for (int64_t i = 0; i < keep; ++i) sum += e[c[i].second];
    }
    std::uniform_real_distribution<double> u(0.0, sum);
    double r = u(rng_), acc = 0;
    for (int64_t i = 0; i < keep; ++i) {
      acc += e[c[i].second];
      if (r < acc) return c[i].second;
    }
    return c[keep - 1].second;
  }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

TEST(SamplerTest, MatchesAWalkOverTheFullySortedCandidates) {
  std::mt19937 rng(3);
  int configs = 0;
  for (int64_t n : {int64_t{5}, int64_t{1000}, int64_t{20000}}) {
    for (int shape = 0; shape < 4; ++shape) {
      // 0 flat, 1 a few likely tokens, 2 one token far ahead, 3 integer logits (ties), a NaN.
      // Fresh logits every draw, so no draw can lean on the order a previous one left behind.
      const auto make_logits = [&] {
        std::normal_distribution<float> normal(0.0f, 2.0f);
        std::vector<float> logits(static_cast<size_t>(n));
        for (float& v : logits) v = shape == 3 ? std::round(normal(rng)) : normal(rng);
        if (shape == 1)
          for (int64_t i = 0; i < std::min<int64_t>(n, 10); ++i) logits[(i * 7919 + 13) % n] += 12.0f;
        if (shape == 2) logits[n / 2] += 30.0f;
        if (shape == 3) logits[n - 1] = NAN;
        return logits;
      };
      for (float temperature : {0.7f, 1.5f}) {
        for (int64_t top_k : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{40}, n + 5}) {
          for (float top_p : {1.0f, 0.95f, 0.5f, 0.0f}) {
            SamplingParams p;
            p.temperature = temperature;
            p.top_k = top_k;
            p.top_p = top_p;
            p.seed = static_cast<uint64_t>(configs);
            Sampler got(p, 1);
            FullSortSampler want(p, 1);
            for (int draw = 0; draw < (n > 1000 ? 6 : 40); ++draw) {
              const std::vector<float> logits = make_logits();
              ASSERT_EQ(got.Next(logits.data(), n), want.Next(logits.data(), n))
                  << "n " << n << " shape " << shape << " T " << temperature << " top_k " << top_k << " top_p "
                  << top_p << " draw " << draw;
            }
            ++configs;
          }
        }
      }
    }
  }
}

TEST(SamplerTest, FrequenciesFollowWhatTopKAndTopPKeep) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f, NAN};
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<double> p(static_cast<size_t>(n), 0.0);  // softmax at temperature 1, the NaN left out
  double z = 0;
  for (int64_t i = 0; i + 1 < n; ++i) z += std::exp(static_cast<double>(logits[i]));
  for (int64_t i = 0; i + 1 < n; ++i) p[i] = std::exp(static_cast<double>(logits[i])) / z;
  struct Case {
    int64_t top_k;
    float top_p;
    int64_t kept;  // the first `kept` tokens (logits are in descending order)
  };
  // p = .563 .207 .126 .076 .028 .004: top-p 0.8 keeps three (.770 < .8 <= .896)
  for (const Case& c : {Case{0, 1.0f, 6}, Case{3, 1.0f, 3}, Case{0, 0.8f, 3}, Case{4, 0.6f, 2}, Case{1, 1.0f, 1}}) {
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.top_k = c.top_k;
    sp.top_p = c.top_p;
    sp.seed = 5;
    Sampler sampler(sp, 0);
    constexpr int kDraws = 200000;
    std::vector<int> count(static_cast<size_t>(n), 0);
    for (int d = 0; d < kDraws; ++d) ++count[sampler.Next(logits.data(), n)];
    double kept_mass = 0;
    for (int64_t i = 0; i < c.kept; ++i) kept_mass += p[i];
    for (int64_t i = 0; i < n; ++i) {
      const double want = i < c.kept ? p[i] / kept_mass : 0.0;
      const double sigma = std::sqrt(want * (1 - want) / kDraws);
      EXPECT_NEAR(static_cast<double>(count[i]) / kDraws, want, 5 * sigma + 1e-9)
          << "token " << i << " top_k " << c.top_k << " top_p " << c.top_p;
    }
  }
}

TEST(SamplerTest, NonFiniteLogits) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_p = 0.9f;
  Sampler sampler(p, 0);
  std::vector<float> x = {1.0f, NAN, 0.5f, NAN};
  for (int d = 0; d < 200; ++d) {
    const int32_t t = sampler.Next(x.data(), 4);
    EXPECT_TRUE(t == 0 || t == 2) << t;  // a NaN is never drawn
  }
  std::vector<float> nans(5, NAN);
  EXPECT_EQ(sampler.Next(nans.data(), 5), 0);
  std::vector<float> low = {-INFINITY, -INFINITY, NAN};
  EXPECT_EQ(sampler.Next(low.data(), 3), 0);
  std::vector<float> inf = {3.0f, INFINITY, 1.0f, INFINITY};
  EXPECT_EQ(sampler.Next(inf.data(), 4), 1);  // the first +inf
}

TEST(SamplerTest, TheSameSeedAndStreamGiveTheSameTokens) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(5000);
  for (float& v : logits) v = normal(rng);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.95f;
  p.seed = 42;
  Sampler a(p, 3), b(p, 3), other(p, 4);
  int same_as_other = 0;
  for (int d = 0; d < 50; ++d) {
    const int32_t t = a.Next(logits.data(), 5000);
    EXPECT_EQ(t, b.Next(logits.data(), 5000)) << d;
    same_as_other += t == other.Next(logits.data(), 5000);
  }
  EXPECT_LT(same_as_other, 10);  // another stream draws other tokens
}

}  // namespace
}  // namespace dsv3
