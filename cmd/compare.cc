// dsv3 compare: how far a (quantized) checkpoint is from a reference one, measured by the
// engine itself: KL(reference || model) of the next-token distributions and top-1
// agreement over every position of the given tokens, the perplexity of each on the same
// tokens, the file sizes, and greedy decode tokens/s of each. Writes JSON.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "engine/base/file.h"
#include "engine/io/tokenizer.h"

namespace dsv3::cmd {

namespace {

StatusOr<std::vector<int32_t>> ReadTokens(const OptionParser& opts) {
  if (opts.vm().count("ids-file") && opts.vm().count("text-file"))
    return Status::Invalid("give one of --ids-file and --text-file");
  if (opts.vm().count("ids-file")) {
    const std::string path = opts.Get<std::string>("ids-file");
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    auto ids = ParseIds(text);
    if (!ids.ok()) return Status::Invalid(path + ": " + ids.status().message());
    return ids;
  }
  if (!opts.vm().count("text-file") || !opts.vm().count("tokenizer"))
    return Status::Invalid("give --ids-file, or --text-file with --tokenizer");
  ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Load(opts.Get<std::string>("tokenizer")));
  ASSIGN_OR_RETURN(std::string text, ReadFile(opts.Get<std::string>("text-file")));
  return tok.Encode(text);
}

// log-softmax of one row in double (the KL of near-identical distributions is a small
// difference of large terms).
void LogSoftmax64(const float* x, int64_t n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  double mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max<double>(mx, x[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  const double lse = mx + std::log(s);
  for (int64_t i = 0; i < n; ++i) (*out)[i] = x[i] - lse;
}

struct Stats {
  int64_t positions = 0, agree = 0, scored = 0;
  double kl_sum = 0, kl_max = 0, nll_model = 0, nll_ref = 0;
  std::vector<double> kls;
};

void Accumulate(const float* a, const float* r, int64_t V, int32_t next, Stats* st) {
  std::vector<double> la, lr;
  LogSoftmax64(a, V, &la);
  LogSoftmax64(r, V, &lr);
  double kl = 0;
  for (int64_t i = 0; i < V; ++i) kl += std::exp(lr[i]) * (lr[i] - la[i]);
  kl = std::max(kl, 0.0);
  st->kl_sum += kl;
  st->kl_max = std::max(st->kl_max, kl);
  st->kls.push_back(kl);
  st->agree += std::max_element(a, a + V) - a == std::max_element(r, r + V) - r;
  ++st->positions;
  if (next >= 0) {
    st->nll_model -= la[next];
    st->nll_ref -= lr[next];
    ++st->scored;
  }
}

// Greedy decode tokens/s after a short prompt (prefill excluded).
StatusOr<double> DecodeRate(Model& m, const std::vector<int32_t>& prompt, int64_t n) {
  GenerateParams p;
  p.max_new_tokens = n;
  ASSIGN_OR_RETURN(auto res, m.Generate({prompt}, p));
  const double secs = res[0].decode_seconds;
  // The first new token comes from the prefill; the rest are decode steps.
  return secs > 0 ? static_cast<double>(res[0].tokens.size() - 1) / secs : 0.0;
}

}  // namespace

int RunCompare(int argc, char** argv) {
  OptionParser opts("compare", "Compare --model-path against --reference on the same tokens: KL, top-1 "
                               "agreement, perplexity ratio, file size, decode tokens/s.");
  opts.AddModelOptions();
  opts.Add()("reference", po::value<std::string>()->required(), "reference checkpoint (e.g. the unquantized one)")(
      "ids-file", po::value<std::string>(), "token ids, whitespace or comma separated")(
      "text-file", po::value<std::string>(), "text to tokenize with --tokenizer")(
      "tokenizer", po::value<std::string>(), "directory with tokenizer.json")(
      "positions", po::value<int64_t>()->default_value(2048), "positions to compare (tokens used: this many)")(
      "seq-len", po::value<int64_t>()->default_value(256), "tokens per prefill window")(
      "decode-tokens", po::value<int64_t>()->default_value(32), "greedy tokens for the decode-speed run (0: skip)")(
      "output", po::value<std::string>(), "write the JSON here too");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("compare", st);
  if (opts.help()) return kExitOk;
  const int64_t positions = opts.Get<int64_t>("positions"), seq = opts.Get<int64_t>("seq-len"),
                ndec = opts.Get<int64_t>("decode-tokens");
  if (positions <= 0 || seq < 2 || ndec < 0)
    return ReportError("compare", Status::Invalid("--positions must be > 0, --seq-len >= 2, --decode-tokens >= 0"));
  if (opts.vm().count("output")) {
    st = CheckOutputPath(opts.Get<std::string>("output"), "--output");
    if (!st.ok()) return ReportError("compare", st);
  }
  auto tokens = ReadTokens(opts);
  if (!tokens.ok()) return ReportError("compare", tokens.status());
  std::vector<int32_t> ids = tokens.value();
  if (static_cast<int64_t>(ids.size()) < positions)
    return ReportError("compare", Status::Invalid("only " + std::to_string(ids.size()) + " tokens for --positions " +
                                                  std::to_string(positions)));
  ids.resize(static_cast<size_t>(positions));

  auto model = LoadModelFrom(opts);
  if (!model.ok()) return ReportError("compare", model.status());
  auto ref = Model::Load(opts.Get<std::string>("reference"), ModelOptionsFrom(opts));
  if (!ref.ok()) return ReportError("compare", ref.status());
  Model& m = *model.value();
  Model& r = *ref.value();
  const int64_t V = m.config().vocab_size;
  if (r.config().vocab_size != V) return ReportError("compare", Status::Invalid("the two models have different vocabularies"));

  Stats s;
  for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(seq)) {
    const std::vector<int32_t> win(ids.begin() + b, ids.begin() + std::min(ids.size(), b + static_cast<size_t>(seq)));
    std::vector<float> la, lr;
    st = m.Logits(win, 0, &la);
    if (st.ok()) st = r.Logits(win, 0, &lr);
    if (!st.ok()) return ReportError("compare", st);
    for (size_t t = 0; t < win.size(); ++t) {
      // A NaN or Inf logit (a broken weight) would make KL and top-1 meaningless, and a NaN
      // KL compares as nothing: kl_max had read 0.
      for (const auto& [logits, which] : {std::pair{&la, "model-path"}, std::pair{&lr, "reference"}}) {
        if (CountNonFinite(logits->data() + t * V, V) > 0)
          return ReportError("compare", Status::Runtime("the --" + std::string(which) + " model's logits at position " +
                                                        std::to_string(b + t) + " are not finite (NaN or Inf): a weight of " +
                                                        opts.Get<std::string>(which) + " may be broken"));
      }
      Accumulate(la.data() + t * V, lr.data() + t * V, V, t + 1 < win.size() ? win[t + 1] : -1, &s);
    }
    std::cerr << "compare: " << s.positions << "/" << ids.size() << " positions\r" << std::flush;
  }
  std::cerr << "\n";
  std::sort(s.kls.begin(), s.kls.end());
  nlohmann::json j;
  j["model"] = opts.Get<std::string>("model-path");
  j["reference"] = opts.Get<std::string>("reference");
  j["quantization"] = QuantizationSummary(m.config());
  j["positions"] = s.positions;
  j["kl_mean"] = s.kl_sum / s.positions;
  j["kl_p99"] = s.kls[static_cast<size_t>(0.99 * (s.kls.size() - 1))];
  j["kl_max"] = s.kl_max;
  j["top1_agreement"] = static_cast<double>(s.agree) / s.positions;
  const double ppl_m = std::exp(s.nll_model / s.scored), ppl_r = std::exp(s.nll_ref / s.scored);
  j["perplexity"] = {{"model", ppl_m}, {"reference", ppl_r}, {"ratio", ppl_m / ppl_r}, {"tokens", s.scored}};
  j["file_bytes"] = {{"model", m.checkpoint_bytes()}, {"reference", r.checkpoint_bytes()},
                     {"ratio", static_cast<double>(m.checkpoint_bytes()) / r.checkpoint_bytes()}};
  if (ndec > 0) {
    const std::vector<int32_t> prompt(ids.begin(), ids.begin() + std::min<size_t>(16, ids.size()));
    auto dm = DecodeRate(m, prompt, ndec);
    auto dr = dm.ok() ? DecodeRate(r, prompt, ndec) : dm;
    if (!dr.ok()) return ReportError("compare", dr.status());
    j["decode_tokens_per_s"] = {{"model", dm.value()}, {"reference", dr.value()}, {"ratio", dm.value() / dr.value()},
                                {"tokens", ndec}};
  }
  const std::string text = j.dump(2) + "\n";
  std::cout << text;
  if (opts.vm().count("output")) {
    st = WriteFileAtomic(opts.Get<std::string>("output"), text);
    if (!st.ok()) return ReportError("compare", st);
  }
  return kExitOk;
}

}  // namespace dsv3::cmd
