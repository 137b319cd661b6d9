// The engine's surface: load a checkpoint, score token sequences, generate. eval/,
// finetune/ and cmd/ see only this (and the config), never the forward internals.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/base/status.h"
#include "engine/model/config.h"
#include "engine/model/sampler.h"

namespace dsv3 {

struct ForwardTrace;
class Transformer;
class Checkpoint;

struct ModelOptions {
  int64_t max_seq_len = 4096;
  int64_t batch_size = 1;        // sequences held in the KV cache at once
  // Tokens per forward step (bounds activation memory). A long prefill goes in steps of this
  // many: each step's expanded attention re-derives the keys and values of every earlier
  // position, and each routed expert's weights are read once per step, so fewer, larger steps
  // cost less (bench-v3-mini pp2048: 256 -> 512 tokens is ~12% faster, 1024 ~2% more).
  int64_t max_step_tokens = 512;
  // Rows of logits a step returns at most (the [rows, vocab] buffer: 132 MB at 256 rows of a
  // 129,280-token vocabulary); a step ends early once it has this many wanted rows, so a
  // prefill that wants only its last row still runs in max_step_tokens steps.
  int64_t max_logit_rows = 256;
  // How MLA attends: kAuto takes, per sequence and step, whichever form needs fewer FLOPs (the
  // absorbed latent form for decode and short chunks, expanded K/V for long prefills); the
  // others force one (tests compare them).
  enum class Attention { kAuto, kAbsorbed, kNaive };
  Attention attention = Attention::kAuto;
  // What the latent KV cache holds (--kv-cache-dtype): float32, attention over the exact values,
  // or bfloat16, half the memory, each cached value rounded once (engine/model/kv_cache.h).
  enum class KvCache { kF32, kBF16 };
  KvCache kv_cache = KvCache::kF32;
};

// Log-likelihood of tokens[score_from:] given what precedes them.
struct ScoreRequest {
  std::vector<int32_t> tokens;
  int64_t score_from = 1;  // >= 1
};
struct ScoreResult {
  std::vector<float> logprobs;  // one per scored token
  std::vector<bool> greedy;     // was each scored token the argmax?
  double sum = 0.0;
  bool all_greedy = true;
};

struct GenerateParams {
  SamplingParams sampling;
  int64_t max_new_tokens = 16;
  std::vector<int32_t> stop_tokens;  // e.g. EOS; the stop token is not returned
  // Random stream per prompt (default: the prompt's index). Callers that must reproduce a
  // sample whatever else is in the batch (resumed evals) give each prompt a stable id.
  std::vector<uint64_t> streams;
};
struct GenerateResult {
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "stop", "length" or "callback"
  double prefill_seconds = 0, decode_seconds = 0;
};
// Called for every new token of sequence `seq`; return false to stop that sequence.
using TokenCallback = std::function<bool(size_t seq, int32_t token)>;

class Model {
 public:
  ~Model();
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& dir, const ModelOptions& options);

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  const std::vector<std::string>& unused_tensors() const { return unused_tensors_; }
  bool mtp_loaded() const { return mtp_loaded_; }
  uint64_t checkpoint_bytes() const;
  // The tensors' bytes, and those of tensors whose data start on a 64-byte line (Checkpoint).
  uint64_t checkpoint_tensor_bytes() const;
  uint64_t checkpoint_line_aligned_bytes() const;
  int64_t kv_cache_bytes() const;
  // Bytes per cached value: 4 (float32) or 2 (bfloat16).
  int64_t kv_cache_value_bytes() const;
  // Tokens run through the forward pass so far (prefix reuse makes this smaller than the
  // tokens requested).
  int64_t tokens_fed() const { return tokens_fed_; }
  // Forward steps run so far (each at most max_step_tokens tokens and max_logit_rows rows).
  int64_t forward_steps() const { return forward_steps_; }

  // logits [rows, V] of one sequence. With decode_from == 0: one prefill, every row. With
  // decode_from = P > 0: prefill ids[0:P], then one token at a time through the cache; rows
  // are positions P-1 .. T-1.
  Status Logits(const std::vector<int32_t>& ids, int64_t decode_from, std::vector<float>* logits,
                ForwardTrace* trace = nullptr);

  // Batched scoring; requests that share a prefix with what a cache slot already holds, or
  // with another request, reuse it (the 5-shot MMLU context is computed once, not once per
  // choice; requests are ordered so that those sharing a prefix run one after another in a
  // slot, and a wave's requests that share one compute it once and copy it).
  StatusOr<std::vector<ScoreResult>> Score(const std::vector<ScoreRequest>& requests);

  StatusOr<std::vector<GenerateResult>> Generate(const std::vector<std::vector<int32_t>>& prompts,
                                                 const GenerateParams& params, const TokenCallback& on_token = nullptr);

 private:
  Model() = default;
  struct Pending;  // a sequence being fed through the cache
  Status CheckIds(const std::vector<int32_t>& ids) const;
  // Feeds every pending sequence's tokens, packing several sequences per step, and calls
  // on_row(pending index, position, logits row) for positions whose logits are wanted.
  void Feed(std::vector<Pending>& pending, const std::function<void(size_t, int64_t, const float*)>& on_row);
  // The untaken slot whose cache shares the longest prefix with tokens; *common: its length.
  int64_t PickSlot(const std::vector<int32_t>& tokens, const std::vector<bool>& taken, int64_t* common) const;
  // Within one wave: a sequence that shares a prefix with an earlier one of the wave, longer
  // than its own slot holds, gets the prefix copied from that one's slot once it is computed.
  void SharePrefixes(std::vector<Pending>& pending);

  ModelConfig config_;
  ModelOptions options_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Transformer> transformer_;
  std::vector<std::string> unused_tensors_;
  bool mtp_loaded_ = false;
  std::vector<std::vector<int32_t>> slot_tokens_;  // what each cache slot holds, position by position
  // [max_logit_rows, V], allocated once and left unwritten: a row's pages become resident when a
  // step writes it (a decode step writes one of 256 rows, 0.5 of 132 MB on a 129,280 vocabulary;
  // zeroed up front, the whole buffer counted in RSS).
  std::unique_ptr<float[]> logits_buf_;
  int64_t tokens_fed_ = 0;
  int64_t forward_steps_ = 0;
};

}  // namespace dsv3
