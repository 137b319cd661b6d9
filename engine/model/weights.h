// Model weights: plain structs of non-owning views into the memory-mapped checkpoint,
// shaped exactly as the Hugging Face tensors are. Ownership of the mapping is elsewhere
// (the Checkpoint), so these structs are cheap to copy and trivially shareable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/base/status.h"
#include "engine/io/checkpoint.h"
#include "engine/kernels/ops.h"
#include "engine/model/config.h"

namespace dsv3 {

struct MlaWeights {
  WeightMatrix q_a_proj;            // [q_lora_rank, D]           (q_lora_rank > 0)
  TensorView q_a_layernorm;         // [q_lora_rank]
  WeightMatrix q_b_proj;            // [H*(nope+rope), q_lora_rank]
  WeightMatrix q_proj;              // [H*(nope+rope), D]         (q_lora_rank == 0)
  WeightMatrix kv_a_proj_with_mqa;  // [kv_lora_rank + rope, D] → [latent | k_pe]
  TensorView kv_a_layernorm;        // [kv_lora_rank]
  WeightMatrix kv_b_proj;           // [H*(nope+v), kv_lora_rank], per head [k_nope | v]
  WeightMatrix o_proj;              // [D, H*v]
};

struct MlpWeights {  // SwiGLU: down(silu(gate(x)) * up(x))
  WeightMatrix gate_proj;  // [I, D]
  WeightMatrix up_proj;    // [I, D]
  WeightMatrix down_proj;  // [D, I]
};

struct MoeWeights {
  WeightMatrix gate;                   // router [E, D]
  TensorView e_score_correction_bias;  // [E], noaux_tc only
  std::vector<MlpWeights> experts;     // E routed experts
  MlpWeights shared;                   // n_shared_experts fused into one MLP (may be empty)
};

struct LayerWeights {
  TensorView input_layernorm;           // [D]
  TensorView post_attention_layernorm;  // [D]
  MlaWeights attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct MtpWeights {  // Multi-Token Prediction module (draft model); loaded when present
  TensorView embed_tokens, enorm, hnorm, shared_head_norm;
  WeightMatrix eh_proj;            // [D, 2D]
  WeightMatrix shared_head_head;   // [V, D]
  LayerWeights layer;
};

struct ModelWeights {
  TensorView embed_tokens;  // [V, D]
  std::vector<LayerWeights> layers;
  TensorView norm;          // [D]
  WeightMatrix lm_head;     // [V, D]
  bool has_mtp = false;
  MtpWeights mtp;
};

struct LoadReport {
  std::vector<std::string> unused_tensors;  // in the files but in no table entry
  bool mtp_loaded = false;
};

// Binds every table entry to the checkpoint, checking shape and dtype of each tensor (and
// the FP8 scale companions) before anything runs. Errors name the file and the tensor.
StatusOr<ModelWeights> BindWeights(const ModelConfig& c, const Checkpoint& ck, LoadReport* report);

}  // namespace dsv3
