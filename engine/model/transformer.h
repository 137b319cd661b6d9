// The decoder: embedding, then per layer h += MLA(norm(h)); h += FFN(norm(h)) where FFN is
// a dense SwiGLU for the first first_k_dense_replace layers and DeepSeekMoE after; then the
// final norm and lm_head. One forward step takes several sequences' tokens flattened into
// one matrix (each at its own position in its own cache slot), so every projection and
// every expert runs once per step over all of them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/kv_cache.h"
#include "engine/model/mla.h"
#include "engine/model/moe.h"
#include "engine/model/rope.h"
#include "engine/model/weights.h"

namespace dsv3 {

// Optional per-step dumps to narrow a mismatch down to a layer.
struct ForwardTrace {
  std::vector<std::vector<float>> hidden;          // [layers + 2][N * D]: embed, each layer, final norm
  std::vector<std::vector<int32_t>> router_indices;  // [layers][N * k] (empty for dense layers)
  std::vector<std::vector<float>> router_weights;
};

// Optional tally of where forward steps spend their time, for `dsv3 bench`: wall seconds per
// stage, summed over layers and steps by the thread that runs Forward (each stage's parallel
// regions included). Off (null) by default; swap it only while no forward runs.
struct StageSeconds {
  double attention = 0;  // each layer's input norm, MLA (projections, cache, attention), residual add
  double moe = 0;        // MoE layers' norm, router, routed and shared experts, residual add
  double dense_mlp = 0;  // the first_k_dense_replace layers' norm, SwiGLU, residual add
  double lm_head = 0;    // final norm and lm_head over the rows whose logits are wanted
  double other = 0;      // embedding lookup
};
void SetStageSeconds(StageSeconds* stages);

struct TransformerOptions {
  int64_t max_seq_len = 4096;
  int64_t slots = 1;            // sequences that can be cached at once (--batch-size)
  int64_t max_step_tokens = 512;  // rows per forward step; longer prefills are split
  AttnImpl attn_impl = AttnImpl::kAuto;
  KvCacheDType kv_cache_dtype = KvCacheDType::kF32;
};

class Transformer {
 public:
  Transformer(const ModelConfig& config, const ModelWeights& weights, const TransformerOptions& options);

  // Runs one step over the flattened tokens of `chunks` (sum of n <= max_step_tokens, each
  // chunk's positions < max_seq_len) and writes logits [logit_rows.size(), V] for the given
  // flattened row indices.
  void Forward(const int32_t* tokens, const std::vector<SeqChunk>& chunks, const std::vector<int64_t>& logit_rows,
               float* logits, ForwardTrace* trace = nullptr);

  const ModelConfig& config() const { return config_; }
  const TransformerOptions& options() const { return options_; }
  const LatentKvCache& cache() const { return cache_; }
  // Positions [0, n) of cache slot `from` into slot `to` (LatentKvCache::CopyPrefix).
  void CopyCachePrefix(int64_t from, int64_t to, int64_t n) { cache_.CopyPrefix(from, to, n); }
  int64_t WorkspaceBytes() const;

 private:
  ModelConfig config_;
  ModelWeights weights_;
  TransformerOptions options_;
  RopeTable rope_;
  LatentKvCache cache_;
  // Activations, sized once for max_step_tokens rows.
  std::vector<float> h_, xn_, branch_, ffn_gate_, ffn_up_, final_;
  MlaScratch mla_;
  // kv_b_proj of each layer in float32, when not stored so and the copies fit kKvBCacheBytes:
  // chunks of several queries (prefill) read every head's W_uk/W_uv in float32, and converting
  // them in every step that has one would cost ~0.4 ms a layer (on the 671B model the copies
  // would be 4 GB: skipped). Decode reads kv_b_proj as stored.
  std::vector<std::vector<float>> kv_b_f32_;
  static constexpr int64_t kKvBCacheBytes = int64_t{1} << 30;
  MoeScratch moe_;
};

}  // namespace dsv3
