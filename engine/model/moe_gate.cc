#include "engine/model/moe_gate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/base/threads.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

namespace {

// Indices of the k largest values, largest first; ties go to the lower index.
void TopK(const float* v, int64_t n, int64_t k, int32_t* out) {
  thread_local std::vector<int32_t> idx;
  idx.resize(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [v](int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  std::copy(idx.begin(), idx.begin() + k, out);
}

}  // namespace

void RouteOne(const ModelConfig& c, const float* logits, const float* bias, int32_t* indices, float* weights) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  thread_local std::vector<float> scores, select, group_scores;
  scores.assign(logits, logits + E);
  if (c.scoring_func == ScoringFunc::kSigmoid) {
    for (auto& v : scores) v = 1.0f / (1.0f + std::exp(-v));
  } else {
    SoftmaxInPlace(scores.data(), E);
  }
  select = scores;
  if (bias)
    for (int64_t e = 0; e < E; ++e) select[e] += bias[e];

  if (c.n_group > 1 && c.topk_method != TopkMethod::kGreedy) {
    const int64_t G = c.n_group, per = E / G;
    group_scores.resize(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) {
      const float* grp = select.data() + g * per;
      if (c.topk_method == TopkMethod::kNoauxTc) {
        int32_t top2[2];
        TopK(grp, per, 2, top2);
        group_scores[g] = grp[top2[0]] + grp[top2[1]];
      } else {
        group_scores[g] = *std::max_element(grp, grp + per);
      }
    }
    thread_local std::vector<int32_t> keep;
    keep.resize(static_cast<size_t>(c.topk_group));
    TopK(group_scores.data(), G, c.topk_group, keep.data());
    thread_local std::vector<char> kept;
    kept.assign(static_cast<size_t>(G), 0);
    for (int32_t g : keep) kept[g] = 1;
    // Experts of dropped groups can never be chosen (model.py masks them with -inf).
    for (int64_t g = 0; g < G; ++g)
      if (!kept[g]) std::fill(select.begin() + g * per, select.begin() + (g + 1) * per, -INFINITY);
  }
  TopK(select.data(), E, k, indices);
  float sum = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    weights[i] = scores[indices[i]];
    sum += weights[i];
  }
  const float scale = static_cast<float>(c.routed_scaling_factor);
  for (int64_t i = 0; i < k; ++i) weights[i] = (c.norm_topk_prob ? weights[i] / sum : weights[i]) * scale;
}

void RouteTokens(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t N, RouterScratch* s,
                 int32_t* indices, float* weights) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  Linear(x, N, w.gate, s->logits.data());
  // The bias is F32 in real checkpoints and used in place; another dtype is converted into
  // the scratch, sized once, so decode allocates nothing here.
  const float* bias = nullptr;
  const TensorView& b = w.e_score_correction_bias;
  if (!b.empty() && b.dtype == DType::kF32) {
    bias = b.f32();
  } else if (!b.empty()) {
    ElementsAsF32(b, 0, E, s->bias.data());
    bias = s->bias.data();
  }
  // Tokens route independently (RouteOne's scratch is per thread), so a prefill's are split
  // between the threads: its 512 had taken ~1 ms of each MoE layer on one (bench-v3-mini).
  // A decode step's few run inline.
  constexpr int64_t kTokensPerChunk = 16;
  ParallelFor(N, kTokensPerChunk, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) RouteOne(c, s->logits.data() + t * E, bias, indices + t * k, weights + t * k);
  });
}

}  // namespace dsv3
