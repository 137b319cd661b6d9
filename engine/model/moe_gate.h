// The DeepSeekMoE router. For each token: scores s = sigmoid or softmax of x·Wgᵀ; a
// selection score c = s (+ e_score_correction_bias under noaux_tc, for selection only);
// groups scored (noaux_tc: sum of each group's top-2 c; otherwise its max) and only the
// topk_group best kept; the top-k c among them chosen. Gate weights are the unbiased s of
// the chosen experts, renormalized when norm_topk_prob, times routed_scaling_factor.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/weights.h"

namespace dsv3 {

struct RouterScratch {
  std::vector<float> logits;  // [N, E]
  std::vector<float> bias;    // [E], the correction bias when not stored as F32
  void Reserve(const ModelConfig& c, int64_t max_tokens) {
    logits.resize(static_cast<size_t>(max_tokens * c.n_routed_experts));
    bias.resize(static_cast<size_t>(c.n_routed_experts));
  }
};

// indices/weights: [N, k], each row ordered by descending selection score.
void RouteTokens(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t N, RouterScratch* s,
                 int32_t* indices, float* weights);

// The per-token rule on one row of router logits (exposed for tests).
void RouteOne(const ModelConfig& c, const float* logits, const float* bias, int32_t* indices, float* weights);

}  // namespace dsv3
