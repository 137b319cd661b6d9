#include "engine/model/transformer.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "engine/base/file.h"
#include "engine/kernels/ops.h"
#include "engine/model/mlp.h"

namespace dsv3 {

namespace {

std::atomic<StageSeconds*> g_stages{nullptr};

// Adds the wall time since the previous mark to a stage of the tally (nothing without one).
class StageClock {
 public:
  explicit StageClock(StageSeconds* stages) : stages_(stages), last_(stages ? Now() : 0.0) {}
  void Mark(double StageSeconds::*stage) {
    if (stages_ == nullptr) return;
    const double now = Now();
    stages_->*stage += now - last_;
    last_ = now;
  }

 private:
  static double Now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  StageSeconds* stages_;
  double last_;
};

}  // namespace

void SetStageSeconds(StageSeconds* stages) { g_stages.store(stages, std::memory_order_relaxed); }

Transformer::Transformer(const ModelConfig& config, const ModelWeights& weights, const TransformerOptions& options)
    : config_(config),
      weights_(weights),
      options_(options),
      rope_(config, options.max_seq_len),
      cache_(config.num_hidden_layers, options.slots, options.max_seq_len, config.kv_lora_rank,
             config.qk_rope_head_dim, options.kv_cache_dtype) {
  const int64_t N = options.max_step_tokens, D = config.hidden_size;
  h_.resize(static_cast<size_t>(N * D));
  xn_.resize(h_.size());
  branch_.resize(h_.size());
  final_.resize(h_.size());
  const int64_t dense_width = config.first_k_dense_replace > 0 ? config.intermediate_size : 0;
  ffn_gate_.resize(static_cast<size_t>(N * dense_width));
  ffn_up_.resize(ffn_gate_.size());
  mla_.Reserve(config, N);
  const int64_t kv_b_floats = config.num_attention_heads * (config.qk_nope_head_dim + config.v_head_dim) * config.kv_lora_rank;
  if (!weights.layers.empty() && weights.layers[0].attn.kv_b_proj.w.dtype != DType::kF32 &&
      kv_b_floats * 4 * config.num_hidden_layers <= kKvBCacheBytes) {
    for (const LayerWeights& lw : weights.layers) {
      kv_b_f32_.emplace_back(static_cast<size_t>(kv_b_floats));
      DequantizeRows(lw.attn.kv_b_proj, 0, lw.attn.kv_b_proj.rows(), kv_b_f32_.back().data());
    }
  }
  if (config.first_k_dense_replace < config.num_hidden_layers) moe_.Reserve(config, N);
  // The embedding is read a row per token, so its pages would fault in one by one as new
  // tokens come (see PopulateMapping); every other weight is read whole by the first step.
  PopulateMapping(weights.embed_tokens.data, weights.embed_tokens.nbytes());
}

int64_t Transformer::WorkspaceBytes() const {
  size_t floats = h_.size() * 4 + ffn_gate_.size() * 2 + mla_.q.size() + mla_.q_a.size() + mla_.kv_a.size() +
                  mla_.attn_out.size() + mla_.kv_b_f32.size() + moe_.gathered.size() + moe_.expert_out.size() +
                  moe_.gate_buf.size() + moe_.up_buf.size() + moe_.router.logits.size();
  return static_cast<int64_t>(floats * sizeof(float));
}

void Transformer::Forward(const int32_t* tokens, const std::vector<SeqChunk>& chunks,
                          const std::vector<int64_t>& logit_rows, float* logits, ForwardTrace* trace) {
  const ModelConfig& c = config_;
  const int64_t D = c.hidden_size, k = c.num_experts_per_tok;
  const float eps = static_cast<float>(c.rms_norm_eps);
  int64_t N = 0;
  bool decode = true;  // every sequence adds one token (see LinearActivations)
  for (const auto& ch : chunks) {
    N = std::max(N, ch.offset + ch.n);
    decode = decode && ch.n == 1;
  }
  const ScopedDecodeStep step(decode);
  StageClock clock(g_stages.load(std::memory_order_relaxed));
  float* h = h_.data();
  float* xn = xn_.data();
  float* branch = branch_.data();

  for (int64_t t = 0; t < N; ++t) EmbeddingRow(weights_.embed_tokens, tokens[t], h + t * D);
  clock.Mark(&StageSeconds::other);
  if (trace) {
    trace->hidden.assign(1, std::vector<float>(h, h + N * D));
    trace->router_indices.clear();
    trace->router_weights.clear();
  }

  for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
    const LayerWeights& lw = weights_.layers[L];
    RmsNorm(h, lw.input_layernorm, N, D, eps, xn);
    MlaForward(c, lw.attn, L, xn, chunks, N, rope_, &cache_, options_.attn_impl, &mla_, branch,
               kv_b_f32_.empty() ? nullptr : kv_b_f32_[L].data());
    AddScaled(h, branch, 1.0f, N * D);  // the residual: 1 · branch is exact
    clock.Mark(&StageSeconds::attention);

    RmsNorm(h, lw.post_attention_layernorm, N, D, eps, xn);
    if (lw.is_moe) {
      MoeForward(c, lw.moe, xn, N, &moe_, branch);
    } else {
      MlpForward(lw.mlp, xn, N, ffn_gate_.data(), ffn_up_.data(), branch, false);
    }
    AddScaled(h, branch, 1.0f, N * D);  // the residual: 1 · branch is exact
    clock.Mark(lw.is_moe ? &StageSeconds::moe : &StageSeconds::dense_mlp);
    if (trace) {
      trace->hidden.emplace_back(h, h + N * D);
      if (lw.is_moe) {
        trace->router_indices.emplace_back(moe_.indices.begin(), moe_.indices.begin() + N * k);
        trace->router_weights.emplace_back(moe_.weights.begin(), moe_.weights.begin() + N * k);
      } else {
        trace->router_indices.emplace_back();
        trace->router_weights.emplace_back();
      }
    }
  }

  // Final norm and lm_head only for the rows whose logits are wanted.
  const int64_t R = static_cast<int64_t>(logit_rows.size());
  if (trace) {
    RmsNorm(h, weights_.norm, N, D, eps, final_.data());
    trace->hidden.emplace_back(final_.data(), final_.data() + N * D);
  }
  for (int64_t r = 0; r < R; ++r) RmsNorm(h + logit_rows[r] * D, weights_.norm, 1, D, eps, final_.data() + r * D);
  if (R > 0) Linear(final_.data(), R, weights_.lm_head, logits);
  clock.Mark(&StageSeconds::lm_head);
}

}  // namespace dsv3
