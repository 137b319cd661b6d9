#include "engine/model/config.h"

#include <cmath>
#include <cstdint>
#include <set>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "engine/base/file.h"

namespace dsv3 {

using json = nlohmann::json;

double YarnGetMscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

double ModelConfig::SoftmaxScale() const {
  double s = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope_scaling.type == RopeType::kYarn && rope_scaling.mscale_all_dim != 0.0) {
    double m = YarnGetMscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
    s *= m * m;
  }
  return s;
}

namespace {

// Fields of published config.json files that carry no architecture (training knobs,
// bookkeeping). They are accepted and ignored; anything else unknown in a YAML preset is an
// error, so a typo never silently falls back to a default.
const std::set<std::string> kInformationalKeys = {
    "architectures", "attention_bias", "attention_dropout", "aux_loss_alpha", "auto_map", "ep_size",
    "pretraining_tp", "seq_aux", "transformers_version", "use_cache", "num_key_value_heads",
    "moe_layer_freq", "hidden_act", "_name_or_path", "quantization_config"};

const std::set<std::string> kConfigKeys = {
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
    "num_hidden_layers", "num_nextn_predict_layers", "num_attention_heads", "first_k_dense_replace",
    "n_shared_experts", "n_routed_experts", "num_experts_per_tok", "n_group", "topk_group", "topk_method",
    "scoring_func", "norm_topk_prob", "routed_scaling_factor", "q_lora_rank", "kv_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_theta", "rms_norm_eps",
    "max_position_embeddings", "rope_scaling", "sliding_window", "tie_word_embeddings", "bos_token_id",
    "eos_token_id", "torch_dtype", "initializer_range"};

class Reader {
 public:
  Reader(const json& j, const std::string& source) : j_(j), source_(source) {}

  Status Int(const char* key, int64_t* out, bool required = true) {
    if (!j_.contains(key) || j_[key].is_null()) {
      return required ? Status::Invalid(source_ + ": missing field \"" + key + "\"") : Status::Ok();
    }
    const json& v = j_[key];
    // 2^63 and beyond would wrap (an unsigned JSON integer) or be undefined (a double cast).
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)
                          : v.is_number_float()  ? std::fabs(v.get<double>()) < 9.2e18
                                                 : true;
    if (v.is_number() && !in_range) {
      return Status::Invalid(source_ + ": field \"" + key + "\" is out of range, got " + v.dump());
    } else if (v.is_number_integer()) {
      *out = v.get<int64_t>();
    } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
      *out = static_cast<int64_t>(v.get<double>());
    } else {
      return Status::Invalid(source_ + ": field \"" + key + "\" must be an integer, got " + v.dump());
    }
    return Status::Ok();
  }
  Status Double(const char* key, double* out, bool required = true) {
    if (!j_.contains(key) || j_[key].is_null()) {
      return required ? Status::Invalid(source_ + ": missing field \"" + key + "\"") : Status::Ok();
    }
    if (!j_[key].is_number()) return Status::Invalid(source_ + ": field \"" + key + "\" must be a number, got " + j_[key].dump());
    *out = j_[key].get<double>();
    return Status::Ok();
  }
  Status Bool(const char* key, bool* out) {
    if (!j_.contains(key) || j_[key].is_null()) return Status::Ok();
    if (!j_[key].is_boolean()) return Status::Invalid(source_ + ": field \"" + key + "\" must be true or false");
    *out = j_[key].get<bool>();
    return Status::Ok();
  }
  Status String(const char* key, std::string* out, bool required = true) {
    if (!j_.contains(key) || j_[key].is_null()) {
      return required ? Status::Invalid(source_ + ": missing field \"" + key + "\"") : Status::Ok();
    }
    if (!j_[key].is_string()) return Status::Invalid(source_ + ": field \"" + key + "\" must be a string");
    *out = j_[key].get<std::string>();
    return Status::Ok();
  }

 private:
  const json& j_;
  const std::string& source_;
};

// quantization_config: "fp8" as in the DeepSeek-V3 release, or dsv3's int8 / int4, whose
// descriptive keys (bits, packing, dtypes) are checked so a file we cannot decode is refused.
Status ParseQuantizationConfig(const json& q, const std::string& source, ModelConfig* c) {
  const std::string where = source + ": quantization_config";
  if (!q.is_object()) return Status::Invalid(where + " must be an object");
  const std::string method = q.value("quant_method", "");
  auto expect = [&](const char* key, const json& want) -> Status {
    if (!q.contains(key) || q[key] != want)
      return Status::Invalid(where + "." + key + " must be " + want.dump() + " for quant_method \"" + method + "\"" +
                             (q.contains(key) ? " (found " + q[key].dump() + ")" : " (missing)"));
    return Status::Ok();
  };
  if (method == "fp8") {
    if (q.value("fmt", "e4m3") != "e4m3") return Status::Invalid(where + ".fmt must be e4m3");
    c->quant_method = QuantMethod::kFp8Block;
  } else if (method == "dsv3_int8") {
    RETURN_IF_ERROR(expect("bits", 8));
    RETURN_IF_ERROR(expect("symmetric", true));
    RETURN_IF_ERROR(expect("scale_dtype", "F32"));
    c->quant_method = QuantMethod::kInt8;
  } else if (method == "dsv3_int4") {
    RETURN_IF_ERROR(expect("bits", 4));
    RETURN_IF_ERROR(expect("packing", "U8 [out, ceil(in/2)], low nibble = even column"));
    RETURN_IF_ERROR(expect("scale_dtype", "F16"));
    if (!q.contains("symmetric") || !q["symmetric"].is_boolean())
      return Status::Invalid(where + ".symmetric must be true or false");
    c->quant_symmetric = q["symmetric"].get<bool>();
    if (!c->quant_symmetric) RETURN_IF_ERROR(expect("zero_dtype", "U8"));
    c->quant_method = QuantMethod::kInt4;
  } else {
    return Status::Invalid(where + ".quant_method \"" + method +
                           "\" is not supported (expected fp8, dsv3_int8 or dsv3_int4)");
  }
  if (q.contains("weight_block_size")) {
    const json& b = q["weight_block_size"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer())
      return Status::Invalid(where + ".weight_block_size must be [out, in]");
    c->quant_block_out = b[0].get<int64_t>();
    c->quant_block_in = b[1].get<int64_t>();
    if (c->quant_method != QuantMethod::kFp8Block && c->quant_block_in == -1) c->quant_block_in = 0;
  } else if (c->quant_method != QuantMethod::kFp8Block) {
    return Status::Invalid(where + ".weight_block_size is required for " + method);
  }
  if (c->quant_method == QuantMethod::kInt4 && c->quant_block_out != 1)
    return Status::Invalid(where + ".weight_block_size must be [1, group] for dsv3_int4");
  return Status::Ok();
}

StatusOr<ModelConfig> ParseJson(const json& j, const std::string& source) {
  if (!j.is_object()) return Status::Invalid(source + ": config is not a JSON object");
  ModelConfig c;
  Reader r(j, source);
  RETURN_IF_ERROR(r.String("model_type", &c.model_type));
  if (c.model_type != "deepseek_v3" && c.model_type != "deepseek_v2")
    return Status::Invalid(source + ": model_type \"" + c.model_type + "\" is not supported (expected deepseek_v3 or deepseek_v2)");
  RETURN_IF_ERROR(r.Int("vocab_size", &c.vocab_size));
  RETURN_IF_ERROR(r.Int("hidden_size", &c.hidden_size));
  RETURN_IF_ERROR(r.Int("intermediate_size", &c.intermediate_size));
  RETURN_IF_ERROR(r.Int("moe_intermediate_size", &c.moe_intermediate_size));
  RETURN_IF_ERROR(r.Int("num_hidden_layers", &c.num_hidden_layers));
  RETURN_IF_ERROR(r.Int("num_nextn_predict_layers", &c.num_nextn_predict_layers, false));
  RETURN_IF_ERROR(r.Int("num_attention_heads", &c.num_attention_heads));
  RETURN_IF_ERROR(r.Int("first_k_dense_replace", &c.first_k_dense_replace, false));
  RETURN_IF_ERROR(r.Int("n_shared_experts", &c.n_shared_experts, false));
  RETURN_IF_ERROR(r.Int("n_routed_experts", &c.n_routed_experts, false));
  RETURN_IF_ERROR(r.Int("num_experts_per_tok", &c.num_experts_per_tok, false));
  RETURN_IF_ERROR(r.Int("n_group", &c.n_group, false));
  RETURN_IF_ERROR(r.Int("topk_group", &c.topk_group, false));
  RETURN_IF_ERROR(r.Bool("norm_topk_prob", &c.norm_topk_prob));
  RETURN_IF_ERROR(r.Double("routed_scaling_factor", &c.routed_scaling_factor, false));
  RETURN_IF_ERROR(r.Int("q_lora_rank", &c.q_lora_rank, false));
  RETURN_IF_ERROR(r.Int("kv_lora_rank", &c.kv_lora_rank));
  RETURN_IF_ERROR(r.Int("qk_nope_head_dim", &c.qk_nope_head_dim));
  RETURN_IF_ERROR(r.Int("qk_rope_head_dim", &c.qk_rope_head_dim));
  RETURN_IF_ERROR(r.Int("v_head_dim", &c.v_head_dim));
  RETURN_IF_ERROR(r.Double("rope_theta", &c.rope_theta, false));
  RETURN_IF_ERROR(r.Double("rms_norm_eps", &c.rms_norm_eps, false));
  RETURN_IF_ERROR(r.Int("max_position_embeddings", &c.max_position_embeddings));
  RETURN_IF_ERROR(r.Int("sliding_window", &c.sliding_window, false));
  RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  RETURN_IF_ERROR(r.Int("bos_token_id", &c.bos_token_id, false));
  RETURN_IF_ERROR(r.Int("eos_token_id", &c.eos_token_id, false));
  RETURN_IF_ERROR(r.String("torch_dtype", &c.torch_dtype, false));
  RETURN_IF_ERROR(r.Double("initializer_range", &c.initializer_range, false));

  // Defaults that differ between V2 and V3 when the field is absent, as in HF's configs.
  std::string topk = c.model_type == "deepseek_v3" ? "noaux_tc" : "greedy";
  std::string scoring = c.model_type == "deepseek_v3" ? "sigmoid" : "softmax";
  RETURN_IF_ERROR(r.String("topk_method", &topk, false));
  RETURN_IF_ERROR(r.String("scoring_func", &scoring, false));
  if (topk == "greedy") c.topk_method = TopkMethod::kGreedy;
  else if (topk == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
  else if (topk == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
  else return Status::Invalid(source + ": field \"topk_method\": unknown value \"" + topk + "\" (expected greedy, group_limited_greedy or noaux_tc)");
  if (scoring == "softmax") c.scoring_func = ScoringFunc::kSoftmax;
  else if (scoring == "sigmoid") c.scoring_func = ScoringFunc::kSigmoid;
  else return Status::Invalid(source + ": field \"scoring_func\": unknown value \"" + scoring + "\" (expected softmax or sigmoid)");

  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    return Status::Invalid(source + ": field \"hidden_act\": only \"silu\" is supported, got " + j["hidden_act"].dump());
  if (j.contains("moe_layer_freq") && j["moe_layer_freq"] != 1)
    return Status::Invalid(source + ": field \"moe_layer_freq\": only 1 is supported, got " + j["moe_layer_freq"].dump());
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null() &&
      j["num_key_value_heads"] != c.num_attention_heads)
    return Status::Invalid(source + ": field \"num_key_value_heads\" must equal num_attention_heads in MLA");

  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    if (!rs.is_object()) return Status::Invalid(source + ": field \"rope_scaling\" must be an object or null");
    std::string type;
    const char* type_key = rs.contains("type") ? "type" : "rope_type";
    Reader rr(rs, source);
    RETURN_IF_ERROR(rr.String(type_key, &type));
    if (type != "yarn") return Status::Invalid(source + ": field \"rope_scaling.type\": unknown rope type \"" + type + "\" (expected yarn)");
    c.rope_scaling.type = RopeType::kYarn;
    std::string prefix = source + ": rope_scaling";
    Reader ry(rs, prefix);
    RETURN_IF_ERROR(ry.Double("factor", &c.rope_scaling.factor));
    RETURN_IF_ERROR(ry.Int("original_max_position_embeddings", &c.rope_scaling.original_max_position_embeddings));
    RETURN_IF_ERROR(ry.Double("beta_fast", &c.rope_scaling.beta_fast, false));
    RETURN_IF_ERROR(ry.Double("beta_slow", &c.rope_scaling.beta_slow, false));
    RETURN_IF_ERROR(ry.Double("mscale", &c.rope_scaling.mscale, false));
    RETURN_IF_ERROR(ry.Double("mscale_all_dim", &c.rope_scaling.mscale_all_dim, false));
  }

  if (j.contains("quantization_config") && !j["quantization_config"].is_null())
    RETURN_IF_ERROR(ParseQuantizationConfig(j["quantization_config"], source, &c));
  RETURN_IF_ERROR(ValidateConfig(c, source));
  return c;
}

json YamlToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return nullptr;
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(YamlToJson(e));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted: always a string
      if (s == "null" || s == "~") return nullptr;
      if (s == "true") return true;
      if (s == "false") return false;
      try {
        size_t pos = 0;
        long long v = std::stoll(s, &pos);
        if (pos == s.size()) return v;
      } catch (...) {
      }
      try {
        size_t pos = 0;
        double v = std::stod(s, &pos);
        if (pos == s.size()) return v;
      } catch (...) {
      }
      return s;
    }
    default: return nullptr;
  }
}

}  // namespace

Status ValidateConfig(const ModelConfig& c, const std::string& source) {
  auto bad = [&](const std::string& field, const std::string& why) {
    return Status::Invalid(source + ": field \"" + field + "\": " + why);
  };
  auto positive = [&](const char* name, int64_t v) -> Status {
    return v > 0 ? Status::Ok() : bad(name, "must be positive, got " + std::to_string(v));
  };
  RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
  RETURN_IF_ERROR(positive("kv_lora_rank", c.kv_lora_rank));
  RETURN_IF_ERROR(positive("qk_nope_head_dim", c.qk_nope_head_dim));
  RETURN_IF_ERROR(positive("v_head_dim", c.v_head_dim));
  RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position_embeddings));
  if (c.qk_rope_head_dim <= 0 || c.qk_rope_head_dim % 2) return bad("qk_rope_head_dim", "must be positive and even");
  if (c.q_lora_rank < 0) return bad("q_lora_rank", "must be null or positive");
  if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers)
    return bad("first_k_dense_replace", "must be between 0 and num_hidden_layers");
  if (c.first_k_dense_replace > 0) RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  if (c.num_nextn_predict_layers < 0 || c.num_nextn_predict_layers > 1)
    return bad("num_nextn_predict_layers", "must be 0 or 1");
  bool has_moe = c.first_k_dense_replace < c.num_hidden_layers;
  if (has_moe) {
    RETURN_IF_ERROR(positive("n_routed_experts", c.n_routed_experts));
    RETURN_IF_ERROR(positive("moe_intermediate_size", c.moe_intermediate_size));
    RETURN_IF_ERROR(positive("num_experts_per_tok", c.num_experts_per_tok));
    if (c.n_shared_experts < 0) return bad("n_shared_experts", "must be >= 0");
    if (c.num_experts_per_tok > c.n_routed_experts) return bad("num_experts_per_tok", "exceeds n_routed_experts");
    if (c.n_group <= 0 || c.n_routed_experts % c.n_group)
      return bad("n_group", "must divide n_routed_experts (" + std::to_string(c.n_routed_experts) + ")");
    if (c.topk_group <= 0 || c.topk_group > c.n_group) return bad("topk_group", "must be between 1 and n_group");
    if (c.topk_method == TopkMethod::kNoauxTc && c.n_group > 1 && c.n_routed_experts / c.n_group < 2)
      return bad("n_group", "noaux_tc scores a group by its top-2 experts, so each group needs at least 2");
    if (c.num_experts_per_tok > (c.n_routed_experts / c.n_group) * c.topk_group)
      return bad("num_experts_per_tok", "exceeds the experts in topk_group groups");
  }
  if (c.rope_scaling.type == RopeType::kYarn) {
    if (!(c.rope_scaling.factor >= 1.0)) return bad("rope_scaling.factor", "must be >= 1");
    if (c.rope_scaling.original_max_position_embeddings <= 0)
      return bad("rope_scaling.original_max_position_embeddings", "must be positive");
  }
  if (c.sliding_window < 0) return bad("sliding_window", "must be null, 0 or positive");
  if (!(c.rms_norm_eps > 0)) return bad("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0)) return bad("rope_theta", "must be positive");
  for (const auto& [name, id] : {std::pair{"bos_token_id", c.bos_token_id}, std::pair{"eos_token_id", c.eos_token_id}})
    if (id >= c.vocab_size) return bad(name, std::to_string(id) + " is not below vocab_size " + std::to_string(c.vocab_size));
  // Upper bounds far past every published model (DeepSeek-V3: 61 layers, 256 experts, hidden
  // 7168): a typo or a corrupt file otherwise plans tensor tables and shards of billions of
  // entries and runs until memory or disk is gone, where it should stop at the field.
  auto at_most = [&](const char* name, int64_t v, int64_t limit) -> Status {
    return v <= limit ? Status::Ok() : bad(name, std::to_string(v) + " is more than dsv3 accepts (" + std::to_string(limit) + ")");
  };
  RETURN_IF_ERROR(at_most("num_hidden_layers", c.num_hidden_layers, 1024));
  RETURN_IF_ERROR(at_most("n_routed_experts", c.n_routed_experts, 65536));
  RETURN_IF_ERROR(at_most("n_shared_experts", c.n_shared_experts, 1024));
  RETURN_IF_ERROR(at_most("hidden_size", c.hidden_size, 131072));
  RETURN_IF_ERROR(at_most("intermediate_size", c.intermediate_size, int64_t{1} << 20));
  RETURN_IF_ERROR(at_most("moe_intermediate_size", c.moe_intermediate_size, int64_t{1} << 20));
  RETURN_IF_ERROR(at_most("vocab_size", c.vocab_size, int64_t{1} << 24));
  RETURN_IF_ERROR(at_most("num_attention_heads", c.num_attention_heads, 4096));
  RETURN_IF_ERROR(at_most("q_lora_rank", c.q_lora_rank, 65536));
  RETURN_IF_ERROR(at_most("kv_lora_rank", c.kv_lora_rank, 65536));
  RETURN_IF_ERROR(at_most("qk_nope_head_dim", c.qk_nope_head_dim, 65536));
  RETURN_IF_ERROR(at_most("qk_rope_head_dim", c.qk_rope_head_dim, 65536));
  RETURN_IF_ERROR(at_most("v_head_dim", c.v_head_dim, 65536));
  RETURN_IF_ERROR(at_most("max_position_embeddings", c.max_position_embeddings, int64_t{1} << 30));
  // Within those, the whole: the expert and embedding matrices alone, in floating point so it
  // cannot overflow, below 10^14 parameters (DeepSeek-V3: ~6.7 · 10^11).
  const double D = static_cast<double>(c.hidden_size), L = static_cast<double>(c.num_hidden_layers);
  const double rough = 3.0 * D * L *
                           (static_cast<double>(c.intermediate_size) +
                            static_cast<double>(c.moe_intermediate_size) * static_cast<double>(c.n_routed_experts + c.n_shared_experts)) +
                       2.0 * D * static_cast<double>(c.vocab_size);
  if (rough > 1e14)
    return Status::Invalid(source + ": the config describes about " + std::to_string(static_cast<int64_t>(rough / 1e12)) +
                           " trillion parameters, more than dsv3 accepts (100 trillion)");
  if (c.quant_method == QuantMethod::kFp8Block && (c.quant_block_out <= 0 || c.quant_block_in <= 0))
    return bad("quantization_config.weight_block_size", "must be positive");
  if (c.quant_method != QuantMethod::kNone && (c.quant_block_out <= 0 || c.quant_block_in < 0))
    return bad("quantization_config.weight_block_size", "must be positive (-1: whole input dimension)");
  return Status::Ok();
}

std::string QuantizationConfigJson(const ModelConfig& c) {
  json q;
  const json block = {c.quant_block_out, c.quant_block_in > 0 ? c.quant_block_in : -1};
  switch (c.quant_method) {
    case QuantMethod::kNone:
      return "null";
    case QuantMethod::kFp8Block:
      q = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"}, {"weight_block_size", block}};
      break;
    case QuantMethod::kInt8:
      q = {{"quant_method", "dsv3_int8"},
           {"bits", 8},
           {"symmetric", true},
           {"weight_block_size", block},
           {"weight_dtype", "I8"},
           {"scale_dtype", "F32"},
           {"scale_suffix", "_scale"},
           {"dequant", "w = q * scale[i / block_out, j / block_in]; block_in -1 = whole row"}};
      break;
    case QuantMethod::kInt4:
      q = {{"quant_method", "dsv3_int4"},
           {"bits", 4},
           {"symmetric", c.quant_symmetric},
           {"weight_block_size", block},
           {"group_size", c.quant_block_in > 0 ? c.quant_block_in : -1},
           {"packing", "U8 [out, ceil(in/2)], low nibble = even column"},
           {"scale_dtype", "F16"},
           {"scale_suffix", "_scale"},
           {"dequant", c.quant_symmetric ? "w = (u - 8) * scale[i, j / group]"
                                         : "w = (u - zero[i, j / group]) * scale[i, j / group]"}};
      if (!c.quant_symmetric) {
        q["zero_dtype"] = "U8";
        q["zero_suffix"] = "_zero";
      }
      break;
  }
  return q.dump();
}

std::string QuantizationSummary(const ModelConfig& c) {
  const std::string in = c.quant_block_in > 0 ? std::to_string(c.quant_block_in) : "row";
  switch (c.quant_method) {
    case QuantMethod::kNone:
      return "none";
    case QuantMethod::kFp8Block:
      return "fp8 e4m3, " + std::to_string(c.quant_block_out) + "x" + in + " blocks";
    case QuantMethod::kInt8:
      return c.quant_block_out == 1 && c.quant_block_in == 0
                 ? "int8 symmetric, per output channel"
                 : "int8 symmetric, " + std::to_string(c.quant_block_out) + "x" + in + " blocks";
    case QuantMethod::kInt4:
      return std::string("int4 ") + (c.quant_symmetric ? "symmetric" : "asymmetric") + ", " +
             (c.quant_block_in > 0 ? "group " + in : "per output channel");
  }
  return "?";
}

StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::Invalid(source + ": not valid JSON: " + e.what());
  }
  return ParseJson(j, source);
}

StatusOr<ModelConfig> LoadHfConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseHfConfig(text, path);
}

StatusOr<ModelConfig> LoadYamlPreset(const std::string& path, std::string* hf_json) {
  if (IsDirectory(path)) return Status::Invalid(path + ": a directory, not a model preset (a .yaml file)");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status::NotFound(path + ": no such file");
  } catch (const YAML::Exception& e) {
    return Status::Invalid(path + ": not valid YAML: " + e.what());
  }
  if (!root.IsMap()) return Status::Invalid(path + ": a model preset must be a YAML mapping");
  json j = YamlToJson(root);
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kConfigKeys.count(it.key()) && !kInformationalKeys.count(it.key()))
      return Status::Invalid(path + ": unknown key \"" + it.key() + "\"");
  ASSIGN_OR_RETURN(ModelConfig c, ParseJson(j, path));
  if (hf_json) *hf_json = ToHfConfigJson(c);
  return c;
}

std::string ToHfConfigJson(const ModelConfig& c) {
  json j;
  const bool v3 = c.model_type == "deepseek_v3";
  j["architectures"] = {v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = 1;
  j["n_shared_experts"] = c.n_shared_experts;
  j["n_routed_experts"] = c.n_routed_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["topk_method"] = c.topk_method == TopkMethod::kNoauxTc ? "noaux_tc"
                     : c.topk_method == TopkMethod::kGroupLimitedGreedy ? "group_limited_greedy" : "greedy";
  j["scoring_func"] = c.scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["q_lora_rank"] = c.q_lora_rank > 0 ? json(c.q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (c.rope_scaling.type == RopeType::kYarn) {
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", c.rope_scaling.factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
                         {"beta_fast", c.rope_scaling.beta_fast},
                         {"beta_slow", c.rope_scaling.beta_slow},
                         {"mscale", c.rope_scaling.mscale},
                         {"mscale_all_dim", c.rope_scaling.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = c.torch_dtype;
  j["initializer_range"] = c.initializer_range;
  if (c.quant_method != QuantMethod::kNone) j["quantization_config"] = json::parse(QuantizationConfigJson(c));
  return j.dump(2) + "\n";
}

}  // namespace dsv3
