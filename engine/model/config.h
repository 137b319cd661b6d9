// ModelConfig: every architectural fact of a DeepSeek-V2/V3 model, parsed once from a
// Hugging Face config.json (or a YAML preset with the same field names) and validated.
// Every variant is an explicit field; nothing is inferred from sizes.
#pragma once

#include <cstdint>
#include <string>

#include "engine/base/status.h"

namespace dsv3 {

enum class ScoringFunc { kSoftmax, kSigmoid };
enum class TopkMethod { kGreedy, kGroupLimitedGreedy, kNoauxTc };
enum class RopeType { kNone, kYarn };
// How projection weights are stored in the checkpoint (what config.json's
// quantization_config says). Norms, embeddings, lm_head and the router stay high precision.
// kFp8Block is the DeepSeek-V3 release format ("fp8"); kInt8 / kInt4 are dsv3's own
// ("dsv3_int8" / "dsv3_int4", layout in engine/quant/int_quant.h).
enum class QuantMethod { kNone, kFp8Block, kInt8, kInt4 };

struct RopeScaling {
  RopeType type = RopeType::kNone;
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 1.0, mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string model_type;  // "deepseek_v3" or "deepseek_v2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense FFN width
  int64_t moe_intermediate_size = 0;  // one expert's width
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0;  // MTP modules stored after the main layers
  int64_t num_attention_heads = 0;
  int64_t first_k_dense_replace = 0;
  int64_t n_shared_experts = 0;
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1, topk_group = 1;
  TopkMethod topk_method = TopkMethod::kGreedy;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t q_lora_rank = 0;  // 0: q_proj directly (config has null)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  RopeScaling rope_scaling;
  int64_t sliding_window = 0;  // 0: full causal attention
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1, eos_token_id = -1;
  std::string torch_dtype = "bfloat16";
  double initializer_range = 0.02;  // std of random init (dsv3 init)
  QuantMethod quant_method = QuantMethod::kNone;
  // weight_block_size [out, in] of the scales. fp8: 128x128 in the release. int8: [1, 0] per
  // output channel or [N, N] blocks; int4: [1, group]. 0 (-1 in config.json) means the whole
  // input dimension of each matrix.
  int64_t quant_block_out = 128, quant_block_in = 128;
  bool quant_symmetric = true;  // int4: false means `<name>_zero` zero points are stored

  // The block width of a matrix with `in` columns (resolves quant_block_in == 0).
  int64_t QuantBlockIn(int64_t in) const { return quant_block_in > 0 ? quant_block_in : in; }

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool IsMoeLayer(int64_t layer) const { return layer >= first_k_dense_replace; }
  // Softmax scale including YaRN's mscale² (HF and model.py agree on this).
  double SoftmaxScale() const;
  // Latent KV cache bytes per token per layer at F32: (kv_lora_rank + qk_rope_head_dim) * 4.
  int64_t KvCacheFloatsPerTokenPerLayer() const { return kv_lora_rank + qk_rope_head_dim; }
};

double YarnGetMscale(double scale, double mscale);

// Parses config.json text. `source` names the file in errors.
StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& source);
StatusOr<ModelConfig> LoadHfConfig(const std::string& path);
// A YAML preset (configs/models/*.yaml): the same field names as config.json; unknown keys
// are errors. Returns the equivalent config.json text in *hf_json when non-null.
StatusOr<ModelConfig> LoadYamlPreset(const std::string& path, std::string* hf_json);
// config.json's "quantization_config" object for c's quant_method, as JSON text ("null" for
// kNone). quantize writes it into the output's config.json.
std::string QuantizationConfigJson(const ModelConfig& c);
// Human-readable one-liner ("int4 asymmetric, group 64", ...) for info and reports.
std::string QuantizationSummary(const ModelConfig& c);
// Serialises back to a Hugging Face config.json (what `dsv3 init` writes).
std::string ToHfConfigJson(const ModelConfig& c);
Status ValidateConfig(const ModelConfig& c, const std::string& source);

}  // namespace dsv3
