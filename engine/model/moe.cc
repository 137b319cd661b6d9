#include "engine/model/moe.h"

#include <algorithm>
#include <cstring>

#include "engine/model/mlp.h"

namespace dsv3 {

void MoeScratch::Reserve(const ModelConfig& c, int64_t max_tokens) {
  const int64_t D = c.hidden_size, k = c.num_experts_per_tok;
  const int64_t width = std::max(c.moe_intermediate_size, c.n_shared_experts * c.moe_intermediate_size);
  router.Reserve(c, max_tokens);
  indices.resize(static_cast<size_t>(max_tokens * k));
  weights.resize(static_cast<size_t>(max_tokens * k));
  gathered.resize(static_cast<size_t>(max_tokens * D));
  expert_out.resize(static_cast<size_t>(max_tokens * D));
  gate_buf.resize(static_cast<size_t>(max_tokens * width));
  up_buf.resize(static_cast<size_t>(max_tokens * width));
  per_expert.resize(static_cast<size_t>(c.n_routed_experts));
  for (auto& v : per_expert) v.reserve(static_cast<size_t>(max_tokens));
}

void MoeForward(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t N, MoeScratch* s, float* out) {
  const int64_t D = c.hidden_size, k = c.num_experts_per_tok;
  RouteTokens(c, w, x, N, &s->router, s->indices.data(), s->weights.data());

  if (!w.shared.gate_proj.empty()) {
    MlpForward(w.shared, x, N, s->gate_buf.data(), s->up_buf.data(), out, false);
  } else {
    std::memset(out, 0, static_cast<size_t>(N * D) * sizeof(float));
  }
  for (auto& v : s->per_expert) v.clear();
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < k; ++i) s->per_expert[s->indices[t * k + i]].push_back({static_cast<int32_t>(t), s->weights[t * k + i]});

  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    const auto& tokens = s->per_expert[e];
    if (tokens.empty()) continue;
    const int64_t n = static_cast<int64_t>(tokens.size());
    for (int64_t j = 0; j < n; ++j)
      std::memcpy(s->gathered.data() + j * D, x + tokens[j].first * D, D * sizeof(float));
    MlpForward(w.experts[e], s->gathered.data(), n, s->gate_buf.data(), s->up_buf.data(), s->expert_out.data(), false);
    for (int64_t j = 0; j < n; ++j) {
      float* dst = out + tokens[j].first * D;
      const float* src = s->expert_out.data() + j * D;
      const float gw = tokens[j].second;
      for (int64_t d = 0; d < D; ++d) dst[d] += gw * src[d];
    }
  }
}

}  // namespace dsv3
