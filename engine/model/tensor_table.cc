#include "engine/model/tensor_table.h"

namespace dsv3 {

namespace {

void AddLayer(const ModelConfig& c, int64_t L, bool mtp, std::vector<TensorSpec>* t) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads;
  const std::string p = "model.layers." + std::to_string(L) + ".";
  auto add = [&](const std::string& name, Shape s, TensorRole r, int64_t expert = -1) {
    t->push_back({p + name, s, r, L, mtp, expert, !mtp});
  };
  add("input_layernorm.weight", {D}, TensorRole::kNorm);
  add("post_attention_layernorm.weight", {D}, TensorRole::kNorm);
  if (c.q_lora_rank > 0) {
    add("self_attn.q_a_proj.weight", {c.q_lora_rank, D}, TensorRole::kProjection);
    add("self_attn.q_a_layernorm.weight", {c.q_lora_rank}, TensorRole::kNorm);
    add("self_attn.q_b_proj.weight", {H * c.qk_head_dim(), c.q_lora_rank}, TensorRole::kProjection);
  } else {
    add("self_attn.q_proj.weight", {H * c.qk_head_dim(), D}, TensorRole::kProjection);
  }
  add("self_attn.kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, D}, TensorRole::kProjection);
  add("self_attn.kv_a_layernorm.weight", {c.kv_lora_rank}, TensorRole::kNorm);
  add("self_attn.kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
      TensorRole::kProjection);
  add("self_attn.o_proj.weight", {D, H * c.v_head_dim}, TensorRole::kProjection);
  auto add_mlp = [&](const std::string& prefix, int64_t inter, int64_t expert) {
    add(prefix + "gate_proj.weight", {inter, D}, TensorRole::kProjection, expert);
    add(prefix + "up_proj.weight", {inter, D}, TensorRole::kProjection, expert);
    add(prefix + "down_proj.weight", {D, inter}, TensorRole::kProjection, expert);
  };
  if (!c.IsMoeLayer(L)) {
    add_mlp("mlp.", c.intermediate_size, -1);
    return;
  }
  add("mlp.gate.weight", {c.n_routed_experts, D}, TensorRole::kRouterGate);
  if (c.topk_method == TopkMethod::kNoauxTc)
    add("mlp.gate.e_score_correction_bias", {c.n_routed_experts}, TensorRole::kRouterBias);
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    add_mlp("mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size, e);
  if (c.n_shared_experts > 0)
    add_mlp("mlp.shared_experts.", c.n_shared_experts * c.moe_intermediate_size, -1);
}

}  // namespace

std::vector<TensorSpec> BuildTensorTable(const ModelConfig& c) {
  std::vector<TensorSpec> t;
  const int64_t V = c.vocab_size, D = c.hidden_size;
  t.push_back({"model.embed_tokens.weight", {V, D}, TensorRole::kEmbedding});
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) AddLayer(c, L, false, &t);
  t.push_back({"model.norm.weight", {D}, TensorRole::kNorm});
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {V, D}, TensorRole::kLmHead});
  for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
    // The MTP module sits at index num_hidden_layers: a full decoder layer (MoE when the
    // main model's later layers are) plus its own embedding, norms, projection and head.
    const int64_t L = c.num_hidden_layers + m;
    const std::string p = "model.layers." + std::to_string(L) + ".";
    t.push_back({p + "embed_tokens.weight", {V, D}, TensorRole::kEmbedding, L, true, -1, false});
    t.push_back({p + "enorm.weight", {D}, TensorRole::kNorm, L, true, -1, false});
    t.push_back({p + "hnorm.weight", {D}, TensorRole::kNorm, L, true, -1, false});
    t.push_back({p + "eh_proj.weight", {D, 2 * D}, TensorRole::kMtpProj, L, true, -1, false});
    AddLayer(c, L, true, &t);
    t.push_back({p + "shared_head.norm.weight", {D}, TensorRole::kNorm, L, true, -1, false});
    t.push_back({p + "shared_head.head.weight", {V, D}, TensorRole::kLmHead, L, true, -1, false});
  }
  return t;
}

ParamCounts CountParams(const ModelConfig& c) {
  ParamCounts pc;
  const int64_t k = c.num_experts_per_tok;
  for (const auto& s : BuildTensorTable(c)) {
    const int64_t n = s.shape.numel();
    if (s.mtp) {
      pc.mtp += n;
      continue;
    }
    pc.total += n;
    if (s.role == TensorRole::kEmbedding || s.role == TensorRole::kLmHead) pc.embedding += n;
    if (s.role == TensorRole::kEmbedding) continue;  // a lookup reads one row, not the table
    if (s.routed_expert >= 0) {
      pc.routed_experts += n;
      // Each routed expert is used by k of E choices per token; count k experts' worth.
      if (s.routed_expert < k) pc.activated += n;
    } else {
      pc.activated += n;
    }
  }
  return pc;
}

}  // namespace dsv3
