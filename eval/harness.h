// The evaluation harness: the two request kinds every task is written in, served by the
// engine in batches, tokenized the way lm-evaluation-harness tokenizes, cached on disk so an
// interrupted run resumes where it stopped.
//   - log-likelihood of a continuation given a context (with is-greedy);
//   - generation until stop sequences or a token budget.
// Tasks (mmlu, humaneval, longbench, perplexity) only build requests and score answers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/api.h"
#include "engine/io/tokenizer.h"
#include "eval/request_cache.h"

namespace dsv3 {

struct HarnessOptions {
  bool add_bos = false;     // prepend BOS to every request (lm-eval's add_bos_token)
  int64_t chunk = 64;       // requests handed to the engine between cache syncs
};

struct LoglikRequest {
  std::string context, continuation;
};
struct LoglikResult {
  double logprob = 0;      // sum over the continuation's tokens
  bool greedy = false;     // every continuation token was the argmax
  int64_t n_tokens = 0;    // continuation tokens
  int64_t truncated = 0;   // context tokens dropped from the left to fit --max-seq-len
  std::string error;       // non-empty: this request could not be scored (and was not)
};

struct GenRequest {
  std::string prompt;                     // text, tokenized with BOS per HarnessOptions
  std::vector<std::string> stop;          // stop strings (cut from the returned text)
  std::vector<int32_t> stop_tokens;       // stop token ids (EOS is added by the harness)
  int64_t max_new_tokens = 256;
  SamplingParams sampling;
  uint64_t stream = 0;                    // random stream (stable per document and sample)
  // When set, the prompt is encoded with the tokenizer's own special-token policy
  // (add_special_tokens) instead of HarnessOptions::add_bos; a chat-templated prompt that
  // already holds BOS sets false.
  std::optional<bool> add_special_tokens;
};
struct GenResult {
  std::string text;           // decoded, special tokens skipped, cut at the first stop string
  int64_t n_tokens = 0;
  std::string finish_reason;  // stop | length
};

struct RollingResult {  // perplexity of a whole text, sliding window with stride
  double nll = 0;       // natural-log sum over scored tokens
  int64_t tokens = 0;   // scored tokens
  int64_t windows = 0;
};

class Harness {
 public:
  Harness(Model* model, const Tokenizer* tokenizer, RequestCache* cache, HarnessOptions options);

  // Cache keys include `task` and the model fingerprint (set by the caller).
  void set_fingerprint(std::string f) { fingerprint_ = std::move(f); }

  StatusOr<std::vector<LoglikResult>> Loglikelihood(const std::string& task, const std::vector<LoglikRequest>& reqs);
  StatusOr<std::vector<GenResult>> GenerateUntil(const std::string& task, const std::vector<GenRequest>& reqs);
  StatusOr<RollingResult> Rolling(const std::string& task, const std::string& text, int64_t stride);

  // lm-eval's _encode_pair: trailing spaces of the context move to the continuation; the
  // continuation's tokens are what the encoding of context+continuation has beyond the
  // context's own encoding. BOS (when add_bos) is part of the context.
  Status EncodePair(const std::string& context, const std::string& continuation, std::vector<int32_t>* context_ids,
                    std::vector<int32_t>* continuation_ids) const;

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  Model& model() { return *model_; }
  const HarnessOptions& options() const { return options_; }

 private:
  std::string Key(const std::string& task, const std::string& request) const;
  Model* model_;
  const Tokenizer* tokenizer_;
  RequestCache* cache_;
  HarnessOptions options_;
  std::string fingerprint_;
};

// A quick fingerprint of a checkpoint: config.json, the safetensors headers and file sizes,
// and the index — enough to tell two checkpoints apart without reading hundreds of GB.
StatusOr<std::string> CheckpointFingerprint(const std::string& dir);

}  // namespace dsv3
