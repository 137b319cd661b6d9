#include "engine/model/sampler.h"

#include <algorithm>
#include <cmath>

namespace dsv3 {

int32_t ArgMax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

int32_t Sampler::Next(const float* logits, int64_t n) {
  if (p_.temperature <= 0.0f) return ArgMax(logits, n);
  cand_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) cand_[i] = {logits[i] / p_.temperature, static_cast<int32_t>(i)};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  int64_t keep = n;
  if (p_.top_k > 0 && p_.top_k < n) {
    keep = p_.top_k;
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted, largest first).
  const float m = cand_[0].first;
  double sum = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    cand_[i].first = std::exp(cand_[i].first - m);
    sum += cand_[i].first;
  }
  // Nucleus: the smallest prefix whose probability reaches top_p.
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cum += cand_[i].first / sum;
      if (cum >= p_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = 0.0;
    for (int64_t i = 0; i < keep; ++i) sum += cand_[i].first;
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng_), acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += cand_[i].first;
    if (r < acc) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace dsv3
