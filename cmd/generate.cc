// dsv3 generate: greedy or sampled decoding, streaming tokens to stdout as they come, with
// prefill and decode speed on stderr.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "engine/io/chat_template.h"
#include "engine/io/tokenizer.h"

namespace dsv3::cmd {

int RunGenerate(int argc, char** argv) {
  OptionParser opts("generate", "Generate a continuation of --ids (or --prompt with a tokenizer).");
  opts.AddModelOptions();
  opts.Add()("ids", po::value<std::string>(), "prompt token ids, space or comma separated")(
      "prompt", po::value<std::string>(), "prompt text (needs tokenizer.json in the model directory)")(
      "tokenizer", po::value<std::string>(), "tokenizer directory (default: the model directory)")(
      "chat", po::bool_switch(), "wrap --prompt in the chat template as a user turn")(
      "max-new-tokens", po::value<int64_t>()->default_value(128), "tokens to generate at most")(
      "temperature", po::value<float>()->default_value(0.0f), "0: greedy")(
      "top-p", po::value<float>()->default_value(1.0f), "nucleus sampling mass")(
      "top-k", po::value<int64_t>()->default_value(0), "sample among the k most likely (0: all)")(
      "ignore-eos", po::bool_switch(), "do not stop at the end-of-sequence token");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("generate", st);
  if (opts.help()) return kExitOk;
  if (opts.Has("ids") == opts.Has("prompt"))
    return ReportError("generate", Status::Invalid("give exactly one of --ids and --prompt"));
  GenerateParams gp;
  gp.max_new_tokens = opts.Get<int64_t>("max-new-tokens");
  gp.sampling.temperature = opts.Get<float>("temperature");
  gp.sampling.top_p = opts.Get<float>("top-p");
  gp.sampling.top_k = opts.Get<int64_t>("top-k");
  gp.sampling.seed = opts.Get<uint64_t>("seed");
  if (Status bad = CheckSampling(gp.sampling); !bad.ok()) return ReportError("generate", bad);
  if (gp.max_new_tokens < 0) return ReportError("generate", Status::Invalid("--max-new-tokens must be >= 0"));

  std::vector<int32_t> prompt;
  std::optional<Tokenizer> tokenizer;
  std::string tokenizer_dir;
  if (opts.Has("ids")) {
    if (opts.Get<bool>("chat")) return ReportError("generate", Status::Invalid("--chat applies to --prompt text"));
    auto ids = ParseIds(opts.Get<std::string>("ids"));
    if (!ids.ok()) return ReportError("generate", ids.status());
    prompt = ids.value();
  } else {
    tokenizer_dir = opts.Has("tokenizer") ? opts.Get<std::string>("tokenizer") : opts.Get<std::string>("model-path");
    auto tok = Tokenizer::Load(tokenizer_dir);
    if (!tok.ok()) return ReportError("generate", tok.status());
    tokenizer = std::move(tok.value());
    std::string text = opts.Get<std::string>("prompt");
    bool special = true;  // BOS as tokenizer_config.json says
    if (opts.Get<bool>("chat")) {
      auto tmpl = ChatTemplate::Load(tokenizer_dir);
      if (!tmpl.ok()) return ReportError("generate", tmpl.status());
      auto rendered = tmpl.value().Render({{"user", text, {}}}, /*add_generation_prompt=*/true);
      if (!rendered.ok()) return ReportError("generate", rendered.status());
      text = rendered.value();
      special = false;  // the template already starts with BOS
    }
    auto ids = tokenizer->Encode(text, special);
    if (!ids.ok()) return ReportError("generate", ids.status());
    prompt = ids.value();
  }
  auto model = LoadModelFrom(opts);
  if (!model.ok()) return ReportError("generate", model.status());
  if (tokenizer) {
    st = CheckTokenizerFitsModel(*tokenizer, tokenizer_dir, model.value()->config().vocab_size,
                                 opts.Get<std::string>("model-path"));
    if (!st.ok()) return ReportError("generate", st);
  }
  if (!opts.Get<bool>("ignore-eos") && model.value()->config().eos_token_id >= 0)
    gp.stop_tokens.push_back(static_cast<int32_t>(model.value()->config().eos_token_id));
  bool first = true;
  std::optional<StreamDecoder> decoder;
  if (tokenizer) decoder.emplace(&*tokenizer, /*skip_special_tokens=*/true);
  const int32_t tokenizer_vocab = tokenizer ? tokenizer->vocab_size() : 0;
  auto r = model.value()->Generate({prompt}, gp, [&](size_t, int32_t tok) {
    if (decoder) {
      std::string piece;
      // Padding ids past the tokenizer's vocabulary have no text (Hugging Face drops them).
      if (tok < tokenizer_vocab && decoder->Push(tok, &piece).ok()) std::fputs(piece.c_str(), stdout);
    } else {
      std::printf(first ? "%d" : " %d", tok);
    }
    std::fflush(stdout);
    first = false;
    return true;
  });
  if (decoder) {
    std::string rest;
    decoder->Finish(&rest);
    std::fputs(rest.c_str(), stdout);
  }
  std::printf("\n");
  if (!r.ok()) return ReportError("generate", r.status());
  const GenerateResult& g = r.value()[0];
  const double n = static_cast<double>(g.tokens.size());
  std::fprintf(stderr, "prefill %zu tokens in %.3f s (%.1f tok/s); decode %zu tokens in %.3f s (%.1f tok/s); finish: %s\n",
               prompt.size(), g.prefill_seconds, prompt.size() / std::max(g.prefill_seconds, 1e-9), g.tokens.size(),
               g.decode_seconds, n > 1 ? (n - 1) / std::max(g.decode_seconds, 1e-9) : 0.0, g.finish_reason.c_str());
  return kExitOk;
}

}  // namespace dsv3::cmd
