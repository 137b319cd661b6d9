#include "engine/model/weights.h"

#include <map>
#include <set>

#include "engine/model/tensor_table.h"
#include "engine/quant/int_quant.h"

namespace dsv3 {

namespace {

bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

class Binder {
 public:
  Binder(const ModelConfig& c, const Checkpoint& ck) : c_(c), ck_(ck) {}

  // Checks one table entry; on success records it as used.
  Status Check(const TensorSpec& s) {
    const SafetensorsFile* file = nullptr;
    const SafetensorsEntry* e = ck_.Find(s.name, &file);
    if (!e) return Status::Invalid(ck_.dir() + ": missing tensor " + s.name + " (config expects shape " + s.shape.ToString() + ")");
    const std::string where = file->path() + ": tensor " + s.name;
    if (MayBeQuantized(s.role) && (e->dtype == DType::kI8 || e->dtype == DType::kU8)) return CheckInt(s, *e, where);
    if (e->shape != s.shape)
      return Status::Invalid(where + " has shape " + e->shape.ToString() + ", config expects " + s.shape.ToString());
    used_.insert(s.name);
    if (MayBeQuantized(s.role) && e->dtype == DType::kF8E4M3) {
      Shape want{(s.shape[0] + c_.quant_block_out - 1) / c_.quant_block_out,
                 (s.shape[1] + c_.quant_block_in - 1) / c_.quant_block_in};
      return CheckCompanion(where, ScaleInvName(s.name), DType::kF32, want,
                            std::to_string(c_.quant_block_out) + "x" + std::to_string(c_.quant_block_in) + " blocks of " +
                                s.shape.ToString());
    }
    bool ok = IsFloat(e->dtype);
    if (s.role == TensorRole::kRouterBias) ok = e->dtype == DType::kF32 || e->dtype == DType::kBF16;
    if (!ok)
      return Status::Invalid(where + " has dtype " + DTypeName(e->dtype) + ", expected F32, BF16 or F16" +
                             (MayBeQuantized(s.role) ? ", F8_E4M3, I8 (int8) or U8 (int4)" : ""));
    return Status::Ok();
  }

  // Integer projections (int8: I8 [out, in]; int4: U8 [out, ceil(in/2)]) with their group
  // scales and zero points; the layout is fixed by config.json's quantization_config.
  Status CheckInt(const TensorSpec& s, const SafetensorsEntry& e, const std::string& where) {
    const bool int4 = e.dtype == DType::kU8;
    const QuantMethod want_method = int4 ? QuantMethod::kInt4 : QuantMethod::kInt8;
    if (c_.quant_method != want_method)
      return Status::Invalid(where + " has dtype " + DTypeName(e.dtype) + " but config.json's quantization_config is not " +
                             (int4 ? "dsv3_int4" : "dsv3_int8"));
    const Shape stored = int4 ? Shape{s.shape[0], (s.shape[1] + 1) / 2} : s.shape;
    if (e.shape != stored)
      return Status::Invalid(where + " has shape " + e.shape.ToString() + ", expected " + stored.ToString() + " for " +
                             DTypeName(e.dtype) + " storage of " + s.shape.ToString());
    used_.insert(s.name);
    if (int4) int4_in_features_[s.name] = s.shape[1];
    const int64_t bo = c_.quant_block_out, bi = c_.QuantBlockIn(s.shape[1]);
    const Shape want{(s.shape[0] + bo - 1) / bo, (s.shape[1] + bi - 1) / bi};
    const std::string why = std::to_string(bo) + "x" + std::to_string(bi) + " groups of " + s.shape.ToString();
    RETURN_IF_ERROR(CheckCompanion(where, Int8ScaleName(s.name), int4 ? DType::kF16 : DType::kF32, want, why));
    if (int4 && !c_.quant_symmetric) RETURN_IF_ERROR(CheckCompanion(where, Int4ZeroName(s.name), DType::kU8, want, why));
    return Status::Ok();
  }

  Status CheckCompanion(const std::string& where, const std::string& name, DType dtype, const Shape& want,
                        const std::string& why) {
    const SafetensorsFile* file = nullptr;
    const SafetensorsEntry* e = ck_.Find(name, &file);
    if (!e) return Status::Invalid(where + " is quantized but its tensor " + name + " is missing");
    if (e->dtype != dtype)
      return Status::Invalid(file->path() + ": tensor " + name + " has dtype " + DTypeName(e->dtype) + ", expected " +
                             DTypeName(dtype));
    if (e->shape != want)
      return Status::Invalid(file->path() + ": tensor " + name + " has shape " + e->shape.ToString() + ", expected " +
                             want.ToString() + " for " + why);
    used_.insert(name);
    return Status::Ok();
  }

  TensorView View(const std::string& name) const { return ck_.View(name); }
  WeightMatrix Matrix(const std::string& name) const {
    WeightMatrix m;
    m.w = ck_.View(name);
    m.block_out = c_.quant_block_out;
    m.block_in = c_.quant_block_in;
    if (m.w.dtype == DType::kF8E4M3) m.scale_inv = ck_.View(ScaleInvName(name));
    if (m.w.dtype == DType::kI8 || m.w.dtype == DType::kU8) {
      m.scale = ck_.View(Int8ScaleName(name));
      if (m.w.dtype == DType::kU8) {
        // The packed width fixes the logical width only up to one column: take the table's.
        m.in_features = int4_in_features_.at(name);
        if (!c_.quant_symmetric) m.zero = ck_.View(Int4ZeroName(name));
      }
      m.block_in = c_.QuantBlockIn(m.w.dtype == DType::kU8 ? m.in_features : m.w.shape[1]);
    }
    return m;
  }
  const std::set<std::string>& used() const { return used_; }

 private:
  const ModelConfig& c_;
  const Checkpoint& ck_;
  std::set<std::string> used_;
  std::map<std::string, int64_t> int4_in_features_;
};

MlpWeights BindMlp(const Binder& b, const std::string& p) {
  return {b.Matrix(p + "gate_proj.weight"), b.Matrix(p + "up_proj.weight"), b.Matrix(p + "down_proj.weight")};
}

LayerWeights BindLayer(const ModelConfig& c, const Binder& b, int64_t L) {
  const std::string p = "model.layers." + std::to_string(L) + ".";
  LayerWeights lw;
  lw.input_layernorm = b.View(p + "input_layernorm.weight");
  lw.post_attention_layernorm = b.View(p + "post_attention_layernorm.weight");
  MlaWeights& a = lw.attn;
  if (c.q_lora_rank > 0) {
    a.q_a_proj = b.Matrix(p + "self_attn.q_a_proj.weight");
    a.q_a_layernorm = b.View(p + "self_attn.q_a_layernorm.weight");
    a.q_b_proj = b.Matrix(p + "self_attn.q_b_proj.weight");
  } else {
    a.q_proj = b.Matrix(p + "self_attn.q_proj.weight");
  }
  a.kv_a_proj_with_mqa = b.Matrix(p + "self_attn.kv_a_proj_with_mqa.weight");
  a.kv_a_layernorm = b.View(p + "self_attn.kv_a_layernorm.weight");
  a.kv_b_proj = b.Matrix(p + "self_attn.kv_b_proj.weight");
  a.o_proj = b.Matrix(p + "self_attn.o_proj.weight");
  lw.is_moe = c.IsMoeLayer(L);
  if (!lw.is_moe) {
    lw.mlp = BindMlp(b, p + "mlp.");
    return lw;
  }
  lw.moe.gate = b.Matrix(p + "mlp.gate.weight");
  if (c.topk_method == TopkMethod::kNoauxTc) lw.moe.e_score_correction_bias = b.View(p + "mlp.gate.e_score_correction_bias");
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    lw.moe.experts.push_back(BindMlp(b, p + "mlp.experts." + std::to_string(e) + "."));
  if (c.n_shared_experts > 0) lw.moe.shared = BindMlp(b, p + "mlp.shared_experts.");
  return lw;
}

}  // namespace

StatusOr<ModelWeights> BindWeights(const ModelConfig& c, const Checkpoint& ck, LoadReport* report) {
  Binder b(c, ck);
  const auto table = BuildTensorTable(c);
  // The MTP module is optional: bind it only when every one of its tensors is present.
  bool mtp_present = c.num_nextn_predict_layers > 0;
  for (const auto& s : table)
    if (s.mtp && !ck.Has(s.name)) mtp_present = false;
  for (const auto& s : table) {
    if (s.mtp && !mtp_present) continue;
    RETURN_IF_ERROR(b.Check(s));
  }

  ModelWeights w;
  w.embed_tokens = b.View("model.embed_tokens.weight");
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) w.layers.push_back(BindLayer(c, b, L));
  w.norm = b.View("model.norm.weight");
  w.lm_head = c.tie_word_embeddings ? WeightMatrix{w.embed_tokens, {}, 128, 128} : b.Matrix("lm_head.weight");
  if (mtp_present) {
    const int64_t L = c.num_hidden_layers;
    const std::string p = "model.layers." + std::to_string(L) + ".";
    w.has_mtp = true;
    w.mtp.embed_tokens = b.View(p + "embed_tokens.weight");
    w.mtp.enorm = b.View(p + "enorm.weight");
    w.mtp.hnorm = b.View(p + "hnorm.weight");
    w.mtp.eh_proj = b.Matrix(p + "eh_proj.weight");
    w.mtp.layer = BindLayer(c, b, L);
    w.mtp.shared_head_norm = b.View(p + "shared_head.norm.weight");
    w.mtp.shared_head_head = b.Matrix(p + "shared_head.head.weight");
  }
  if (report) {
    report->mtp_loaded = mtp_present;
    report->unused_tensors.clear();
    for (const auto& name : ck.Names()) {
      if (b.used().count(name)) continue;
      // An incomplete MTP module is skipped, not an error: published conversions drop it.
      report->unused_tensors.push_back(name);
    }
  }
  return w;
}

}  // namespace dsv3
