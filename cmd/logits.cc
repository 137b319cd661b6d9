// dsv3 logits: the logits of a token sequence (one prefill, or prefill then decode one token
// at a time through the cache), written as a safetensors file; optional per-layer dumps.
#include <algorithm>
#include <iostream>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "engine/base/file.h"
#include "engine/io/safetensors.h"
#include "engine/model/transformer.h"

namespace dsv3::cmd {

int RunLogits(int argc, char** argv) {
  OptionParser opts("logits", "Write tensor `logits` [rows, V] F32 for --ids to --out.");
  opts.AddModelOptions();
  opts.Add()("ids", po::value<std::string>()->required(), "token ids, space or comma separated")(
      "decode-from", po::value<int64_t>()->default_value(0),
      "prefill ids[0:P], then decode one token at a time; rows are positions P-1..T-1")(
      "out", po::value<std::string>()->required(), "output .safetensors")(
      "dump-layers", po::bool_switch(), "also write hidden.embed, hidden.layerN, hidden.final_norm, router.layerN.*")(
      "attention", po::value<std::string>()->default_value("auto"),
      "MLA form: auto (fewest FLOPs per chunk), absorbed (latent), naive (expanded K/V)");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("logits", st);
  if (opts.help()) return kExitOk;
  auto ids = ParseIds(opts.Get<std::string>("ids"));
  if (!ids.ok()) return ReportError("logits", ids.status());
  st = ApplyCommonModelOptions(opts);
  if (st.ok()) st = CheckOutputPath(opts.Get<std::string>("out"), "--out");
  if (!st.ok()) return ReportError("logits", st);
  ModelOptions mo = ModelOptionsFrom(opts);
  const std::string attention = opts.Get<std::string>("attention");
  if (attention == "auto") {
    mo.attention = ModelOptions::Attention::kAuto;
  } else if (attention == "absorbed") {
    mo.attention = ModelOptions::Attention::kAbsorbed;
  } else if (attention == "naive") {
    mo.attention = ModelOptions::Attention::kNaive;
  } else {
    return ReportError("logits", Status::Invalid("--attention must be auto, absorbed or naive, not '" +
                                                         attention + "'"));
  }
  const bool dump = opts.Get<bool>("dump-layers");
  if (dump) mo.max_step_tokens = std::max<int64_t>(mo.max_step_tokens, static_cast<int64_t>(ids.value().size()));
  auto model = Model::Load(opts.Get<std::string>("model-path"), mo);
  if (!model.ok()) return ReportError("logits", model.status());
  const ModelConfig& c = model.value()->config();
  std::vector<float> logits;
  ForwardTrace trace;
  st = model.value()->Logits(ids.value(), opts.Get<int64_t>("decode-from"), &logits, dump ? &trace : nullptr);
  if (!st.ok()) return ReportError("logits", st);
  // Written as computed (they are what a debugging run wants to see), but not silently.
  if (const int64_t bad = CountNonFinite(logits.data(), static_cast<int64_t>(logits.size())); bad > 0)
    std::cerr << "dsv3 logits: warning: " << bad << " of " << logits.size()
              << " logits are NaN or Inf: a weight or the input of this model is broken\n";

  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  const int64_t rows = static_cast<int64_t>(logits.size()) / c.vocab_size;
  w.AddBytes("logits", DType::kF32, Shape{rows, c.vocab_size}, logits.data());
  if (dump) {
    const int64_t T = static_cast<int64_t>(ids.value().size()), D = c.hidden_size, k = c.num_experts_per_tok;
    w.AddBytes("hidden.embed", DType::kF32, Shape{T, D}, trace.hidden.front().data());
    for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
      w.AddBytes("hidden.layer" + std::to_string(L), DType::kF32, Shape{T, D}, trace.hidden[L + 1].data());
      if (!trace.router_indices[L].empty()) {
        w.AddBytes("router.layer" + std::to_string(L) + ".indices", DType::kI32, Shape{T, k}, trace.router_indices[L].data());
        w.AddBytes("router.layer" + std::to_string(L) + ".weights", DType::kF32, Shape{T, k}, trace.router_weights[L].data());
      }
    }
    w.AddBytes("hidden.final_norm", DType::kF32, Shape{T, D}, trace.hidden.back().data());
  }
  st = w.Write(opts.Get<std::string>("out"));
  if (!st.ok()) return ReportError("logits", st);
  std::cerr << "wrote " << opts.Get<std::string>("out") << ": logits [" << rows << ", " << c.vocab_size << "]\n";
  return kExitOk;
}

}  // namespace dsv3::cmd
