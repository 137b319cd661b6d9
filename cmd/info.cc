// dsv3 info: what a checkpoint is — architecture, exact parameter counts (total, MTP,
// activated per token), bytes per dtype, and the latent KV cache per token. Works on a
// directory holding only config.json (counts come from the config, not the weights).
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "cmd/options.h"
#include "engine/base/file.h"
#include "engine/io/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/tensor_table.h"

namespace dsv3::cmd {

namespace {

std::string Billions(int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fB", static_cast<double>(n) / 1e9);
  if (n < 100000000) std::snprintf(buf, sizeof buf, "%.2fM", static_cast<double>(n) / 1e6);
  return buf;
}

std::string TopkName(TopkMethod m) {
  return m == TopkMethod::kNoauxTc ? "noaux_tc" : m == TopkMethod::kGroupLimitedGreedy ? "group_limited_greedy" : "greedy";
}

}  // namespace

int RunInfo(int argc, char** argv) {
  OptionParser opts("info", "Architecture, parameter counts, dtypes and memory plan of a checkpoint.");
  opts.Add()("model-path", po::value<std::string>()->required(), "checkpoint directory (config.json is enough)")(
      "json", po::bool_switch(), "machine-readable output")(
      "max-seq-len", po::value<int64_t>()->default_value(4096), "for the KV-cache size per sequence");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("info", st);
  if (opts.help()) return kExitOk;
  const std::string dir = opts.Get<std::string>("model-path");
  auto cfg = LoadHfConfig(JoinPath(dir, "config.json"));
  if (!cfg.ok()) return ReportError("info", cfg.status());
  const ModelConfig& c = cfg.value();
  const ParamCounts pc = CountParams(c);

  // Bytes per dtype from the weights when present.
  std::map<std::string, uint64_t> bytes_by_dtype;
  uint64_t file_bytes = 0;
  bool have_weights = false;
  auto ck = Checkpoint::Open(dir);
  if (ck.ok()) {
    have_weights = true;
    file_bytes = ck.value()->TotalBytes();
    for (const auto& f : ck.value()->files())
      for (const auto& e : f->entries()) bytes_by_dtype[DTypeName(e.dtype)] += e.end - e.begin;
  } else if (ck.status().code() != StatusCode::kNotFound || FileExists(JoinPath(dir, "model.safetensors.index.json"))) {
    // Config only means no weight files at all; an index whose shard is missing is an error.
    return ReportError("info", ck.status());
  }
  const int64_t kv_values = c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim);
  const int64_t max_len = opts.Get<int64_t>("max-seq-len");
  if (max_len < 1) return ReportError("info", Status::Invalid("--max-seq-len must be >= 1"));
  const std::string quant = QuantizationSummary(c);
  if (opts.Get<bool>("json")) {
    nlohmann::json j;
    j["model_type"] = c.model_type;
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["dense_layers"] = c.first_k_dense_replace;
    j["hidden_size"] = c.hidden_size;
    j["vocab_size"] = c.vocab_size;
    j["params"] = {{"total", pc.total}, {"mtp", pc.mtp}, {"total_with_mtp", pc.total + pc.mtp},
                   {"activated", pc.activated}, {"embedding", pc.embedding}, {"routed_experts", pc.routed_experts}};
    j["quantization"] = quant;
    if (c.quant_method != QuantMethod::kNone) j["quantization_config"] = nlohmann::json::parse(QuantizationConfigJson(c));
    j["kv_cache"] = {{"values_per_token", kv_values}, {"bytes_per_token_bf16", kv_values * 2},
                     {"bytes_per_token_f32", kv_values * 4}, {"max_seq_len", max_len},
                     {"bytes_per_sequence_f32", kv_values * 4 * max_len}};
    if (have_weights) {
      j["weights"] = {{"file_bytes", file_bytes}, {"bytes_by_dtype", bytes_by_dtype}};
    }
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "model         " << c.model_type << ", " << c.num_hidden_layers << " layers (" << c.first_k_dense_replace
            << " dense + " << c.num_hidden_layers - c.first_k_dense_replace << " MoE), hidden " << c.hidden_size
            << ", vocab " << c.vocab_size << "\n";
  std::cout << "attention     MLA, " << c.num_attention_heads << " heads, q_lora_rank "
            << (c.q_lora_rank ? std::to_string(c.q_lora_rank) : "none (q_proj)") << ", kv_lora_rank " << c.kv_lora_rank
            << ", qk_nope " << c.qk_nope_head_dim << ", qk_rope " << c.qk_rope_head_dim << ", v " << c.v_head_dim
            << (c.sliding_window ? ", sliding window " + std::to_string(c.sliding_window) : "") << "\n";
  std::cout << "rope          theta " << c.rope_theta;
  if (c.rope_scaling.type == RopeType::kYarn)
    std::cout << ", YaRN factor " << c.rope_scaling.factor << " (original " << c.rope_scaling.original_max_position_embeddings
              << ", mscale " << c.rope_scaling.mscale << "/" << c.rope_scaling.mscale_all_dim << ")";
  std::cout << ", max positions " << c.max_position_embeddings << "\n";
  if (c.first_k_dense_replace < c.num_hidden_layers)
    std::cout << "moe           " << c.n_routed_experts << " routed experts (" << c.num_experts_per_tok << " per token, "
              << (c.scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax") << ", " << TopkName(c.topk_method)
              << ", " << c.n_group << " groups / top " << c.topk_group << "), " << c.n_shared_experts
              << " shared, width " << c.moe_intermediate_size << ", scaling " << c.routed_scaling_factor << "\n";
  std::cout << "parameters    total " << Billions(pc.total) << " (" << pc.total << "), MTP " << Billions(pc.mtp)
            << ", with MTP " << Billions(pc.total + pc.mtp) << ", activated per token " << Billions(pc.activated)
            << " (" << pc.activated << ")\n";
  std::cout << "quantization  " << quant;
  if (have_weights) std::cout << "; weights " << std::fixed << std::setprecision(2) << file_bytes / 1e9 << " GB on disk";
  std::cout << std::defaultfloat << "\n";
  if (have_weights) {
    std::cout << "weights       " << file_bytes << " bytes on disk:";
    for (const auto& [dt, b] : bytes_by_dtype) std::cout << " " << dt << " " << b;
    std::cout << "\n";
  } else {
    std::cout << "weights       none in this directory (config only)\n";
  }
  std::cout << "kv cache      latent " << kv_values << " values/token (" << kv_values * 2 << " bytes BF16, "
            << kv_values * 4 << " bytes F32); " << max_len << " tokens: " << kv_values * 4 * max_len
            << " bytes F32 per sequence\n";
  return kExitOk;
}

}  // namespace dsv3::cmd
