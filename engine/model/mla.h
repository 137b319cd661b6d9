// Multi-head Latent Attention (DeepSeek-V2/V3). Queries come through a low-rank (or full)
// projection; keys and values are compressed into one latent per token plus a shared rope
// key, which is all the cache stores. Two evaluations of the same math:
//  - absorbed: W_uk is folded into the query and W_uv applied after the weighted sum, so
//    attention runs directly over the cached latents (what makes long context cheap);
//  - naive: keys and values are expanded from the latents per head (the simple twin that
//    tests check the absorbed path against).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/kv_cache.h"
#include "engine/model/rope.h"
#include "engine/model/weights.h"

namespace dsv3 {

// The tokens of one sequence within a forward step: `n` tokens at positions
// [start_pos, start_pos + n) stored in cache slot `slot`, rows [offset, offset + n) of the
// step's flattened activations.
struct SeqChunk {
  int64_t slot = 0;
  int64_t start_pos = 0;
  int64_t n = 0;
  int64_t offset = 0;
};

// kAbsorb folds W_uk into the query and W_uv after the latent-weighted sum: attention runs
// over the C-wide latents, cheapest when few queries meet many cached keys (decode).
// kNaive expands K and V for every cached position first: cheaper once a chunk has more than
// ~C/2 queries (long prefills). kAuto picks by FLOP count for each chunk.
enum class AttnImpl { kAuto, kAbsorb, kNaive };

// The form a chunk of T queries over S cached keys (S >= T) runs in: `impl` unless it is
// kAuto, else the one with fewer multiply-adds.
AttnImpl ChooseAttnForm(const ModelConfig& c, AttnImpl impl, int64_t T, int64_t S);

// Scratch buffers sized once for `max_tokens` rows per step.
struct MlaScratch {
  std::vector<float> q_a, q, kv_a, attn_out, kv_b_f32;
  std::vector<float> decode_q, decode_parts;  // one-query chunks: absorbed queries, span partials
  LinearInput q_b_in;                          // a decode step's normed q_a, prepared for q_b
  // Chunks of several queries over a bf16 cache: each chunk's rows widened once for all its jobs.
  std::vector<std::vector<float>> wide_kv, wide_pe;
  void Reserve(const ModelConfig& c, int64_t max_tokens);
};

// out[N, D] = MLA(x[N, D]) where x is already input-normed. Writes this step's latents and
// rope keys into the cache first, so each token attends to itself and everything before it.
// One-query chunks (decode) read kv_b_proj as stored (WeightRowScores and friends, ops.h);
// chunks of several queries read it in float32: `kv_b_f32` when not null, else dequantized
// into the scratch for this call.
void MlaForward(const ModelConfig& c, const MlaWeights& w, int64_t layer, const float* x,
                const std::vector<SeqChunk>& chunks, int64_t N, const RopeTable& rope, LatentKvCache* cache,
                AttnImpl impl, MlaScratch* s, float* out, const float* kv_b_f32 = nullptr);

}  // namespace dsv3
