// The one tensor table: for a config, every checkpoint tensor with its Hugging Face name,
// expected shape, role and whether it is required. Load, init, info (parameter counts),
// quantize and LoRA targets all walk this table, so a tensor is declared exactly once.
#pragma once

#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/tensor/tensor.h"

namespace dsv3 {

enum class TensorRole {
  kEmbedding,   // [V, D]
  kNorm,        // RMSNorm weight [n]
  kProjection,  // attention / MLP / expert projection [out, in]: may be FP8 with _scale_inv
  kRouterGate,  // mlp.gate.weight [E, D]: kept high precision
  kRouterBias,  // e_score_correction_bias [E]: F32 in real checkpoints
  kLmHead,      // [V, D]
  kMtpProj,     // eh_proj [D, 2D]: kept high precision
};

struct TensorSpec {
  std::string name;
  Shape shape;
  TensorRole role;
  int64_t layer = -1;         // decoder layer index (the MTP layer is num_hidden_layers)
  bool mtp = false;           // part of the Multi-Token Prediction module
  int64_t routed_expert = -1; // expert index for routed-expert projections
  bool required = true;       // MTP tensors are optional
};

std::vector<TensorSpec> BuildTensorTable(const ModelConfig& c);

// Roles whose tensors may be stored quantized (FP8 blocks, int8, int4) and run by Linear:
// the projections, and the output heads when `dsv3 quantize --quantize-lm-head` wrote them so.
inline bool MayBeQuantized(TensorRole r) { return r == TensorRole::kProjection || r == TensorRole::kLmHead; }

// Name of the FP8 block-scale companion of a projection.
inline std::string ScaleInvName(const std::string& weight_name) { return weight_name + "_scale_inv"; }

struct ParamCounts {
  int64_t total = 0;      // main model (no MTP)
  int64_t mtp = 0;        // MTP module, counting its own copies of embed/head as stored
  // Per token in the main model: every weight a token's matrix products touch, i.e. all but
  // the unchosen routed experts, and not the embedding table (a lookup reads one row of it).
  // This is the convention behind DeepSeek's "37B activated" (V3) and "2.4B" (V2-Lite).
  int64_t activated = 0;
  int64_t embedding = 0;  // embed_tokens + lm_head
  int64_t routed_experts = 0;
};
ParamCounts CountParams(const ModelConfig& c);

}  // namespace dsv3
