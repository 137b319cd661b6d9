// Perplexity of a text file with a sliding window (stride), and bits per byte, which stays
// comparable across tokenizers.
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "eval/tasks.h"

namespace dsv3 {

StatusOr<std::string> LoadPerplexityTask(const PerplexityTaskOptions& o) {
  if (o.file.empty()) return Status::Invalid("perplexity needs --perplexity-file FILE");
  ASSIGN_OR_RETURN(std::string text, ReadFile(o.file));
  if (text.empty()) return Status::Invalid(o.file + ": empty text");
  return text;
}

Status RunPerplexity(Harness& h, const std::string& text, const PerplexityTaskOptions& o, EvalResults* r) {
  const int64_t stride = o.stride > 0 ? o.stride : std::max<int64_t>(1, h.model().options().max_seq_len / 2);
  ASSIGN_OR_RETURN(RollingResult roll, h.Rolling("perplexity", text, stride));
  TaskMetrics& m = r->tasks["perplexity"];
  m.values["perplexity"] = std::exp(roll.nll / static_cast<double>(roll.tokens));
  m.values["bits_per_byte"] = roll.nll / std::log(2.0) / static_cast<double>(text.size());
  m.values["nll_per_token"] = roll.nll / static_cast<double>(roll.tokens);
  m.n_samples = roll.tokens;
  nlohmann::json log = {{"task", "perplexity"}, {"file", o.file}, {"tokens", roll.tokens}, {"bytes", text.size()},
                        {"windows", roll.windows}, {"stride", stride}, {"nll", roll.nll}};
  r->sample_log.push_back(log.dump());
  r->info["perplexity"] = "sliding window " + std::to_string(h.model().options().max_seq_len) + ", stride " +
                          std::to_string(stride);
  return Status::Ok();
}

}  // namespace dsv3
