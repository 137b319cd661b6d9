// DeepSeekMoE: shared experts on every token plus the routed experts the gate picks. Tokens
// are grouped by expert so each expert runs one matrix product over all of its tokens and
// only the chosen experts' weights are ever read.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/moe_gate.h"
#include "engine/model/weights.h"

namespace dsv3 {

struct MoeScratch {
  RouterScratch router;
  std::vector<int32_t> indices;   // [N, k]
  std::vector<float> weights;     // [N, k]
  std::vector<float> gathered;    // [N, D] tokens of one expert
  std::vector<float> expert_out;  // [N, D]
  std::vector<float> gate_buf, up_buf;  // [N, max(width)]
  std::vector<std::vector<std::pair<int32_t, float>>> per_expert;  // token, weight
  // Picks stacked expert by expert: expert e's tokens are rows [offset[e], offset[e + 1]).
  std::vector<int64_t> offset;
  // [N, k]: each token's rows of expert_out and their gate weights, in expert order.
  std::vector<std::pair<int64_t, float>> picked_rows;
  std::vector<int64_t> picks_placed;  // [N] each token's rows placed so far (filling picked_rows)
  std::vector<int32_t> picked_tokens;  // [N, k] each pick's token, expert by expert
  LinearInput all_tokens;  // a step's tokens quantized once, when its routed experts take int8
  // Each projection input as the kernels read it, prepared once for all its row blocks:
  // [0] the shared experts', [1 + e] routed expert e's.
  std::vector<LinearInput> inputs;
  std::vector<LinearJob> jobs;  // one region's products (LinearJobs)
  void Reserve(const ModelConfig& c, int64_t max_tokens);
};

// out[N, D] = MoE(x[N, D]). Router picks are left in s->indices / s->weights.
void MoeForward(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t N, MoeScratch* s, float* out);

}  // namespace dsv3
