// Perplexity of a text file with a sliding window (stride), and bits per byte, which stays
// comparable across tokenizers.
#include <algorithm>
#include <cmath>
#include <string_view>
#include <nlohmann/json.hpp>

#include "datasets/csv.h"  // IsValidUtf8
#include "engine/base/file.h"
#include "eval/tasks.h"

namespace dsv3 {

StatusOr<std::string> LoadPerplexityTask(const PerplexityTaskOptions& o) {
  if (o.file.empty()) return Status::Invalid("perplexity needs --perplexity-file FILE");
  ASSIGN_OR_RETURN(std::string text, ReadFile(o.file));
  if (text.empty()) return Status::Invalid(o.file + ": empty text");
  // The text is scored as Unicode (and keys the request cache as JSON): a stray byte is an
  // input error at its line, as in every other dataset reader.
  for (size_t begin = 0, line = 1; begin < text.size(); ++line) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    if (!IsValidUtf8(std::string_view(text).substr(begin, end - begin)))
      return Status::Invalid(o.file + ":" + std::to_string(line) + ": not valid UTF-8");
    begin = end + 1;
  }
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
