#include "engine/model/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "engine/kernels/ops.h"

namespace dsv3 {

// Vectorized at any -O (GCC's -O2 cost model leaves loops of unknown length scalar: ~100 us
// a 129,280-logit row, ~1% of a bench-v3-mini INT4 decode step; this way ~11 us). The first
// pass ORs a mask of the all-ones exponents (NaN, Inf); only a row that has one is counted.
__attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic"))) int64_t CountNonFinite(const float* x,
                                                                                               int64_t n) {
  uint32_t any = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    any |= (bits & 0x7f800000u) == 0x7f800000u ? 0xffffffffu : 0u;
  }
  if (any == 0) return 0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += !std::isfinite(x[i]);
  return count;
}

Status CheckSampling(const SamplingParams& p, const std::string& prefix) {
  const auto shown = [](float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    return std::string(buf);
  };
  if (!(p.temperature >= 0.0f) || std::isinf(p.temperature))
    return Status::Invalid(prefix + "temperature must be >= 0 (0: greedy), got " + shown(p.temperature));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return Status::Invalid(prefix + "top-p must be in (0, 1], got " + shown(p.top_p));
  if (p.top_k < 0) return Status::Invalid(prefix + "top-k must be >= 0 (0: no limit), got " + std::to_string(p.top_k));
  return Status::Ok();
}

// As the plain scan (best = i whenever logits[i] > logits[best]) gives: logits[0] if it is
// NaN, else the first index of the largest non-NaN logit. The scan's one compare chain took
// 85 us over DeepSeek-V3's 129280 logits (~0.5-1% of a decode step); here (20 us,
// BM_ArgMax) each block's maximum comes from eight independent chains, and only a block that
// beats the best so far is searched for where its maximum first occurs.
int32_t ArgMax(const float* logits, int64_t n) {
  if (n <= 0 || std::isnan(logits[0])) return 0;
  constexpr int64_t kBlock = 2048;
  int64_t best = 0;
  float best_value = logits[0];
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    float m[8];
    for (float& v : m) v = -INFINITY;
    int64_t i = b0;
    for (; i + 8 <= b1; i += 8)
      for (int j = 0; j < 8; ++j) m[j] = logits[i + j] > m[j] ? logits[i + j] : m[j];  // NaN: kept out
    for (; i < b1; ++i) m[0] = logits[i] > m[0] ? logits[i] : m[0];
    float block_max = m[0];
    for (int j = 1; j < 8; ++j) block_max = m[j] > block_max ? m[j] : block_max;
    if (!(block_max > best_value)) continue;
    best_value = block_max;
    best = b0;
    while (logits[best] != block_max) ++best;
  }
  return static_cast<int32_t>(best);
}

namespace {

// out[i] = x[i] / t. Its own loop, vectorized: one division at a time took ~40% of a draw.
__attribute__((optimize("O3"))) void DivideBy(const float* __restrict x, int64_t n, float t, float* __restrict out) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] / t;
}

// Sorts v[from, end) by logit, largest first, keeping their order among equal logits (Next
// hands them over in token order, so ties go to the lower token, as by_logit orders them): a
// stable least-significant-digit radix sort, three passes of 11 bits over each logit's bits
// mapped to an unsigned order (-0 read as +0, which compares equal to it), their histograms
// counted in one read. Scratch: the caller's, kept between calls. An untrained
// model's flat logits need most of the order: std::sort of 129280 took ~11 ms.
void SortByLogitStable(std::vector<std::pair<float, int32_t>>* v, size_t from,
                       std::vector<std::pair<uint32_t, int32_t>>* keys, std::vector<std::pair<uint32_t, int32_t>>* tmp,
                       std::vector<std::pair<float, int32_t>>* gathered) {
  constexpr int kBits = 11, kBuckets = 1 << kBits, kPasses = (32 + kBits - 1) / kBits;
  const size_t n = v->size() - from;
  keys->resize(n);
  tmp->resize(n);
  size_t count[kPasses][kBuckets + 1] = {};  // every pass's histogram from one read of the keys
  for (size_t i = 0; i < n; ++i) {
    const float f = (*v)[from + i].first + 0.0f;
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    const uint32_t key = ~((b & 0x80000000u) ? ~b : (b | 0x80000000u));  // decreases with f
    (*keys)[i] = {key, static_cast<int32_t>(i)};
    for (int p = 0; p < kPasses; ++p) ++count[p][((key >> (p * kBits)) & (kBuckets - 1)) + 1];
  }
  std::pair<uint32_t, int32_t>* src = keys->data();
  std::pair<uint32_t, int32_t>* dst = tmp->data();
  for (int p = 0; p < kPasses; ++p) {
    size_t* at = count[p];
    for (int d = 0; d < kBuckets; ++d) at[d + 1] += at[d];
    for (size_t i = 0; i < n; ++i) dst[at[(src[i].first >> (p * kBits)) & (kBuckets - 1)]++] = src[i];
    std::swap(src, dst);
  }
  gathered->resize(n);  // src: positions in sorted order
  for (size_t i = 0; i < n; ++i) (*gathered)[i] = (*v)[from + static_cast<size_t>(src[i].second)];
  std::copy(gathered->begin(), gathered->end(), v->begin() + static_cast<std::ptrdiff_t>(from));
}

}  // namespace

// Temperature sampling as a walk down the candidates sorted by scaled logit (largest first,
// ties to the lower index): top-k keeps the first k, top-p the shortest prefix whose mass
// reaches top_p, and the draw r in [0, mass kept) picks the first candidate whose running
// mass passes r. The walks stop early, so only as much of the order is made as they reach
// (sorting all 129280 had cost ~13 ms a token, as much as a bench-v3-mini decode step): with
// top-k its first k, selected with a heap; without, the candidates whose unnormalized
// probability e is at least 2^-10 of the total (at most 1024; e is monotone in the logit, so
// they are the order's first ones), the others appended only when a walk runs past them and
// then sorted as far as it goes (sort_past below). The e are ExpShiftedSum's exp(logit /
// temperature - max) (ops.h, vectorized); the masses are summed in walk order, except the
// total without top-k (the nucleus's denominator, and the draw's range without top-p), summed
// in token order in four chains before any sorting.
int32_t Sampler::Next(const float* logits, int64_t n) {
  if (p_.temperature <= 0.0f) return ArgMax(logits, n);
  scaled_.resize(static_cast<size_t>(n));
  exp_.resize(static_cast<size_t>(n));
  float* s = scaled_.data();
  float* e_of = exp_.data();
  DivideBy(logits, n, p_.temperature, s);
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(s[i])) s[i] = -INFINITY;  // never drawn
    m = s[i] > m ? s[i] : m;
  }
  // No finite maximum: every logit NaN or -inf (the first), or some +inf (the first of those).
  if (!std::isfinite(m)) return ArgMax(logits, n);
  std::copy(s, s + n, e_of);
  ExpShiftedSum(e_of, n, m);
  double chains[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i4 = 0;
  for (; i4 + 4 <= n; i4 += 4)
    for (int j = 0; j < 4; ++j) chains[j] += e_of[i4 + j];
  for (; i4 < n; ++i4) chains[0] += e_of[i4];
  const double total = (chains[0] + chains[1]) + (chains[2] + chains[3]);

  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  const float tau = static_cast<float>(total * 0x1p-10);  // e >= tau: at most 1024, the order's first
  int64_t keep = n;
  double sum = total;
  cand_.clear();
  if (p_.top_k > 0 && p_.top_k < n) {
    // The first top_k of the order, by a heap of the best so far (partial_sort's selection,
    // reading the logits in place): the walks below never go past them.
    keep = p_.top_k;
    for (int64_t i = 0; i < keep; ++i) cand_.push_back({s[i], static_cast<int32_t>(i)});
    std::make_heap(cand_.begin(), cand_.end(), by_logit);  // front: the worst kept
    for (int64_t i = keep; i < n; ++i) {
      const std::pair<float, int32_t> c{s[i], static_cast<int32_t>(i)};
      if (!by_logit(c, cand_.front())) continue;
      std::pop_heap(cand_.begin(), cand_.end(), by_logit);
      cand_.back() = c;
      std::push_heap(cand_.begin(), cand_.end(), by_logit);
    }
    std::sort_heap(cand_.begin(), cand_.end(), by_logit);
  } else {
    for (int64_t i = 0; i < n; ++i)
      if (e_of[i] >= tau) cand_.push_back({s[i], static_cast<int32_t>(i)});  // the first ones
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  int64_t sorted = static_cast<int64_t>(cand_.size());  // cand_[0, sorted) are the largest, in order
  // Extends the sorted prefix past position i, where the walk has `reached` of the mass it
  // needs: a heap's partial sort for a few more (the first kFirstSorted, then eight times as
  // many up to kMaxPartialSort), else all of the rest by radix (under an eighth reached: an
  // untrained model's flat logits, which need most of the order).
  const auto sort_past = [&](int64_t i, double reached) {
    int64_t want = std::max({kFirstSorted, 8 * sorted, i + 1});
    if (want > kMaxPartialSort || want * 8 >= n || reached < 0.125) want = n;
    // cand_[sorted, n): every other candidate, in token order (the radix sort keeps that order
    // among equal logits), whether missing or moved by a partial sort before.
    if (want == n || static_cast<int64_t>(cand_.size()) < n) {
      placed_.assign(static_cast<size_t>(n), 0);
      for (int64_t j = 0; j < sorted; ++j) placed_[cand_[j].second] = 1;
      cand_.resize(static_cast<size_t>(sorted));
      for (int64_t j = 0; j < n; ++j)
        if (!placed_[j]) cand_.push_back({s[j], static_cast<int32_t>(j)});
    }
    if (want == n) {
      SortByLogitStable(&cand_, static_cast<size_t>(sorted), &keys_, &keys_tmp_, &gathered_);
    } else {
      std::partial_sort(cand_.begin() + sorted, cand_.begin() + want, cand_.end(), by_logit);
    }
    sorted = want;
  };
  const auto e = [&](int64_t i) { return e_of[cand_[i].second]; };
  if (keep < n) {
    sum = 0.0;
    for (int64_t i = 0; i < keep; ++i) sum += e(i);
  }
  // Nucleus: the shortest prefix whose probability reaches top_p.
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      if (i >= sorted) sort_past(i, cum / p_.top_p);
      cum += e(i) / sum;
      if (cum >= p_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = 0.0;
    for (int64_t i = 0; i < keep; ++i) sum += e(i);
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng_), acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    if (i >= sorted) sort_past(i, acc / r);
    acc += e(i);
    if (r < acc) return cand_[i].second;
  }
  if (keep > sorted) sort_past(keep - 1, 1.0);
  return cand_[keep - 1].second;
}

}  // namespace dsv3
