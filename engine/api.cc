#include "engine/api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "engine/base/file.h"
#include "engine/io/checkpoint.h"
#include "engine/kernels/ops.h"
#include "engine/model/transformer.h"
#include "engine/model/weights.h"

namespace dsv3 {

struct Model::Pending {
  int64_t slot = 0;
  const std::vector<int32_t>* tokens = nullptr;
  int64_t next = 0;       // next position to feed
  int64_t end = 0;        // feed positions [next, end)
  int64_t want_from = 0;  // logits wanted for positions >= want_from
};

namespace {
double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

// How many leading tokens a and b share.
int64_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  return std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n), b.begin()).first - a.begin();
}

// The order requests run in, `slots` a wave: sorted by their tokens (requests that share a
// prefix side by side, identical ones in their given order), cut into `slots` runs of
// consecutive ones, wave w taking the w-th of every run. A run's requests then follow one
// another in one slot, whose cache holds their shared prefix, where given in order they ran
// side by side in different slots and each computed it (an MMLU question's four choices in one
// wave: its five-shot context four times, so that --batch-size 4 scored slower than 1). As
// many waves as before, each as full.
std::vector<size_t> WaveOrder(const std::vector<const std::vector<int32_t>*>& seqs, int64_t slots) {
  const size_t n = seqs.size(), s = static_cast<size_t>(std::max<int64_t>(1, slots));
  std::vector<size_t> sorted(n);
  for (size_t i = 0; i < n; ++i) sorted[i] = i;
  std::stable_sort(sorted.begin(), sorted.end(), [&](size_t a, size_t b) { return *seqs[a] < *seqs[b]; });
  const size_t run = (n + s - 1) / s;  // requests per run, the number of waves
  std::vector<size_t> order;
  order.reserve(n);
  for (size_t w = 0; w < run; ++w)
    for (size_t r = 0; r * run + w < n; ++r) order.push_back(sorted[r * run + w]);
  return order;
}
}  // namespace

Model::~Model() = default;

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir, const ModelOptions& options) {
  if (options.max_seq_len < 1 || options.batch_size < 1 || options.max_step_tokens < 1 || options.max_logit_rows < 1)
    return Status::Invalid("max_seq_len, batch_size, max_step_tokens and max_logit_rows must be positive");
  std::unique_ptr<Model> m(new Model());
  m->options_ = options;
  ASSIGN_OR_RETURN(m->config_, LoadHfConfig(JoinPath(dir, "config.json")));
  ASSIGN_OR_RETURN(m->checkpoint_, Checkpoint::Open(dir));
  LoadReport report;
  ASSIGN_OR_RETURN(ModelWeights weights, BindWeights(m->config_, *m->checkpoint_, &report));
  m->unused_tensors_ = report.unused_tensors;
  m->mtp_loaded_ = report.mtp_loaded;
  TransformerOptions t;
  t.max_seq_len = options.max_seq_len;
  t.slots = options.batch_size;
  t.max_step_tokens = options.max_step_tokens;
  switch (options.attention) {
    case ModelOptions::Attention::kAuto: t.attn_impl = AttnImpl::kAuto; break;
    case ModelOptions::Attention::kAbsorbed: t.attn_impl = AttnImpl::kAbsorb; break;
    case ModelOptions::Attention::kNaive: t.attn_impl = AttnImpl::kNaive; break;
  }
  t.kv_cache_dtype = options.kv_cache == ModelOptions::KvCache::kBF16 ? KvCacheDType::kBF16 : KvCacheDType::kF32;
  m->transformer_ = std::make_unique<Transformer>(m->config_, weights, t);
  m->slot_tokens_.assign(static_cast<size_t>(options.batch_size), {});
  m->logits_buf_.reset(new float[static_cast<size_t>(std::min(options.max_logit_rows, options.max_step_tokens) *
                                                    m->config_.vocab_size)]);
  return m;
}

uint64_t Model::checkpoint_bytes() const { return checkpoint_->TotalBytes(); }
uint64_t Model::checkpoint_tensor_bytes() const { return checkpoint_->TensorBytes(); }
uint64_t Model::checkpoint_line_aligned_bytes() const { return checkpoint_->LineAlignedTensorBytes(); }
int64_t Model::kv_cache_bytes() const { return transformer_->cache().bytes(); }
int64_t Model::kv_cache_value_bytes() const { return transformer_->cache().value_bytes(); }

Status Model::CheckIds(const std::vector<int32_t>& ids) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= config_.vocab_size)
      return Status::Invalid("token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
  if (static_cast<int64_t>(ids.size()) > options_.max_seq_len)
    return Status::Invalid("sequence of " + std::to_string(ids.size()) + " tokens exceeds --max-seq-len " +
                           std::to_string(options_.max_seq_len));
  return Status::Ok();
}

void Model::Feed(std::vector<Pending>& pending, const std::function<void(size_t, int64_t, const float*)>& on_row) {
  const int64_t cap = options_.max_step_tokens, row_cap = options_.max_logit_rows, V = config_.vocab_size;
  std::vector<int32_t> step_tokens(static_cast<size_t>(cap));
  std::vector<SeqChunk> chunks;
  std::vector<int64_t> rows;
  std::vector<std::pair<size_t, int64_t>> owners;  // pending index, position
  for (auto& p : pending) slot_tokens_[p.slot].resize(static_cast<size_t>(std::min<int64_t>(p.next, slot_tokens_[p.slot].size())));
  for (;;) {
    chunks.clear();
    rows.clear();
    owners.clear();
    int64_t N = 0;
    for (size_t i = 0; i < pending.size() && N < cap; ++i) {
      Pending& p = pending[i];
      if (p.next >= p.end) continue;
      // The positions before want_from need no logits; the wanted ones fit what is left of
      // the logits buffer.
      const int64_t unwanted = std::max<int64_t>(0, p.want_from - p.next);
      const int64_t rows_left = row_cap - static_cast<int64_t>(rows.size());
      const int64_t n = std::min({p.end - p.next, cap - N, unwanted + rows_left});
      if (n <= 0) continue;
      chunks.push_back({p.slot, p.next, n, N});
      auto& cached = slot_tokens_[p.slot];
      for (int64_t j = 0; j < n; ++j) {
        const int64_t pos = p.next + j;
        step_tokens[N + j] = (*p.tokens)[pos];
        cached.push_back((*p.tokens)[pos]);
        if (pos >= p.want_from) {
          rows.push_back(N + j);
          owners.push_back({i, pos});
        }
      }
      p.next += n;
      N += n;
    }
    if (chunks.empty()) return;
    tokens_fed_ += N;
    ++forward_steps_;
    transformer_->Forward(step_tokens.data(), chunks, rows, logits_buf_.get());
    for (size_t r = 0; r < rows.size(); ++r) on_row(owners[r].first, owners[r].second, logits_buf_.get() + r * V);
  }
}

Status Model::Logits(const std::vector<int32_t>& ids, int64_t decode_from, std::vector<float>* logits,
                     ForwardTrace* trace) {
  RETURN_IF_ERROR(CheckIds(ids));
  const int64_t T = static_cast<int64_t>(ids.size()), V = config_.vocab_size;
  if (T == 0) return Status::Invalid("no token ids given");
  if (decode_from < 0 || decode_from > T) return Status::Invalid("--decode-from must be between 1 and the number of ids");
  slot_tokens_[0].clear();
  const int64_t first_row = decode_from > 0 ? decode_from - 1 : 0;
  logits->assign(static_cast<size_t>((T - first_row) * V), 0.0f);
  auto keep = [&](size_t, int64_t pos, const float* row) {
    std::copy(row, row + V, logits->begin() + (pos - first_row) * V);
  };
  if (trace) {
    // A trace covers one forward step: the whole prefill at once.
    if (decode_from > 0 || T > options_.max_step_tokens)
      return Status::Invalid("layer dumps need a single prefill step (no --decode-from, at most max_step_tokens ids)");
    std::vector<SeqChunk> chunks{{0, 0, T, 0}};
    std::vector<int64_t> rows(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) rows[i] = i;
    transformer_->Forward(ids.data(), chunks, rows, logits->data(), trace);
    slot_tokens_[0] = ids;
    return Status::Ok();
  }
  std::vector<Pending> pending(1);
  pending[0] = {0, &ids, 0, decode_from > 0 ? decode_from : T, first_row};
  Feed(pending, keep);
  for (int64_t pos = decode_from > 0 ? decode_from : T; pos < T; ++pos) {
    pending[0] = {0, &ids, pos, pos + 1, pos};
    Feed(pending, keep);
  }
  return Status::Ok();
}

// A follower's prefix [0, L) comes from a leader (an earlier sequence of the wave that copies
// nothing itself), L the longest common prefix, cut to the positions neither needs logits for
// and the leader feeds anyway: the leaders first feed up to the longest prefix a follower
// takes (one step for all of them), then the followers' slots get those rows, and Feed goes on
// from there for everyone. Worth it from kMinSharedTokens on (the copy is 13.8 KB a position on
// bench-v3-mini, 140 KB on DeepSeek-V3, against a forward pass).
void Model::SharePrefixes(std::vector<Pending>& pending) {
  constexpr int64_t kMinSharedTokens = 16;
  const size_t n = pending.size();
  std::vector<int64_t> leader(n, -1), length(n, 0), target(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const Pending& p = pending[i];
    for (size_t j = 0; j < i; ++j) {
      const Pending& q = pending[j];
      if (leader[j] >= 0) continue;
      const int64_t common = std::min({CommonPrefix(*p.tokens, *q.tokens), p.want_from, q.want_from, q.end});
      if (common >= p.next + kMinSharedTokens && common > length[i]) {
        leader[i] = static_cast<int64_t>(j);
        length[i] = common;
      }
    }
    if (leader[i] >= 0) target[leader[i]] = std::max(target[leader[i]], length[i]);
  }
  std::vector<Pending> first;  // the leaders, as far as their followers need
  std::vector<size_t> led;
  for (size_t j = 0; j < n; ++j)
    if (target[j] > pending[j].next) {
      Pending q = pending[j];
      q.end = target[j];
      first.push_back(q);
      led.push_back(j);
    }
  if (first.empty()) return;
  Feed(first, [](size_t, int64_t, const float*) {});  // no rows: every end is before want_from
  for (size_t k = 0; k < led.size(); ++k) pending[led[k]].next = target[led[k]];
  for (size_t i = 0; i < n; ++i) {
    if (leader[i] < 0) continue;
    Pending& p = pending[i];
    const Pending& q = pending[leader[i]];
    transformer_->CopyCachePrefix(q.slot, p.slot, length[i]);
    slot_tokens_[p.slot].assign(p.tokens->begin(), p.tokens->begin() + length[i]);
    p.next = length[i];
  }
}

int64_t Model::PickSlot(const std::vector<int32_t>& tokens, const std::vector<bool>& taken, int64_t* common) const {
  int64_t best = -1, best_len = -1;
  for (int64_t s = 0; s < static_cast<int64_t>(slot_tokens_.size()); ++s) {
    if (taken[s]) continue;
    const int64_t len = CommonPrefix(slot_tokens_[s], tokens);
    if (len > best_len) {
      best = s;
      best_len = len;
    }
  }
  *common = best_len;
  return best;
}

StatusOr<std::vector<ScoreResult>> Model::Score(const std::vector<ScoreRequest>& requests) {
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    const int64_t T = static_cast<int64_t>(r.tokens.size());
    if (T < 2 || r.score_from < 1 || r.score_from >= T)
      return Status::Invalid("score request " + std::to_string(i) + ": score_from must be in [1, " +
                             std::to_string(T - 1) + "]");
    Status st = CheckIds(r.tokens);
    if (!st.ok()) return st.WithPrefix("score request " + std::to_string(i) + ": ");
  }
  std::vector<ScoreResult> results(requests.size());
  const int64_t V = config_.vocab_size, slots = options_.batch_size;
  std::vector<const std::vector<int32_t>*> seqs;
  for (const auto& r : requests) seqs.push_back(&r.tokens);
  const std::vector<size_t> order = WaveOrder(seqs, slots);
  for (size_t wave = 0; wave < requests.size(); wave += static_cast<size_t>(slots)) {
    const size_t end = std::min(requests.size(), wave + static_cast<size_t>(slots));
    std::vector<Pending> pending;
    std::vector<size_t> which;
    std::vector<bool> taken(static_cast<size_t>(slots), false);
    for (size_t o = wave; o < end; ++o) {
      const size_t i = order[o];
      const auto& r = requests[i];
      int64_t common = 0;
      const int64_t slot = PickSlot(r.tokens, taken, &common);
      taken[slot] = true;
      const int64_t T = static_cast<int64_t>(r.tokens.size());
      pending.push_back({slot, &r.tokens, std::min(common, r.score_from - 1), T - 1, r.score_from - 1});
      which.push_back(i);
      results[i].logprobs.assign(static_cast<size_t>(T - r.score_from), 0.0f);
      results[i].greedy.assign(static_cast<size_t>(T - r.score_from), false);
    }
    SharePrefixes(pending);
    Feed(pending, [&](size_t pi, int64_t pos, const float* row) {
      const ScoreRequest& r = requests[which[pi]];
      ScoreResult& res = results[which[pi]];
      const int32_t target = r.tokens[pos + 1];
      const int32_t best = ArgMax(row, V);
      const float m = row[best];  // the largest logit (NaN if row[0] is)
      const size_t j = static_cast<size_t>(pos + 1 - r.score_from);
      res.logprobs[j] = static_cast<float>(row[target] - m - LogSumExpShifted(row, V, m));
      res.greedy[j] = best == target;
    });
  }
  for (auto& res : results) {
    res.sum = 0.0;
    res.all_greedy = true;
    for (size_t j = 0; j < res.logprobs.size(); ++j) {
      res.sum += res.logprobs[j];
      res.all_greedy = res.all_greedy && res.greedy[j];
    }
  }
  return results;
}

StatusOr<std::vector<GenerateResult>> Model::Generate(const std::vector<std::vector<int32_t>>& prompts,
                                                      const GenerateParams& params, const TokenCallback& on_token) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return Status::Invalid("prompt " + std::to_string(i) + " is empty");
    Status st = CheckIds(prompts[i]);
    if (!st.ok()) return st.WithPrefix("prompt " + std::to_string(i) + ": ");
  }
  if (params.max_new_tokens < 0) return Status::Invalid("max_new_tokens must be >= 0");
  if (!params.streams.empty() && params.streams.size() != prompts.size())
    return Status::Invalid("GenerateParams.streams must have one entry per prompt");
  std::vector<GenerateResult> results(prompts.size());
  const int64_t V = config_.vocab_size, slots = options_.batch_size;
  std::vector<const std::vector<int32_t>*> by_index;
  for (const auto& p : prompts) by_index.push_back(&p);
  const std::vector<size_t> order = WaveOrder(by_index, slots);
  for (size_t wave = 0; wave < prompts.size(); wave += static_cast<size_t>(slots)) {
    const size_t end = std::min(prompts.size(), wave + static_cast<size_t>(slots));
    const size_t n = end - wave;
    std::vector<size_t> which(order.begin() + wave, order.begin() + end);  // the wave's prompts
    std::vector<std::vector<int32_t>> seqs;
    for (size_t p : which) seqs.push_back(prompts[p]);
    std::vector<Sampler> samplers;
    std::vector<bool> taken(static_cast<size_t>(slots), false), active(n, true);
    std::vector<Pending> pending(n);
    std::vector<int32_t> next_token(n, -1);
    for (size_t i = 0; i < n; ++i) {
      samplers.emplace_back(params.sampling, params.streams.empty() ? which[i] : params.streams[which[i]]);
      int64_t common = 0;
      const int64_t slot = PickSlot(seqs[i], taken, &common);
      taken[slot] = true;
      const int64_t T = static_cast<int64_t>(seqs[i].size());
      pending[i] = {slot, &seqs[i], std::min(common, T - 1), T, T - 1};
    }
    // A NaN or infinite logit (a broken weight) has no argmax and no distribution: greedy
    // decoding had emitted token 0 for it, step after step.
    std::atomic<bool> non_finite{false};
    auto sample = [&](size_t i, int64_t, const float* row) {
      if (CountNonFinite(row, V) > 0) non_finite.store(true, std::memory_order_relaxed);
      next_token[i] = samplers[i].Next(row, V);
    };
    const auto broken = [&] {
      return Status::Runtime("the logits hold NaN or Inf values: a weight or the input of this model is broken "
                             "(dsv3 compare against a reference, or dsv3 logits, shows where)");
    };
    auto t0 = std::chrono::steady_clock::now();
    if (params.max_new_tokens > 0) {
      SharePrefixes(pending);
      Feed(pending, sample);
      if (non_finite.load()) return broken();
    }
    const double prefill = Seconds(t0);
    t0 = std::chrono::steady_clock::now();
    for (;;) {
      bool any = false;
      for (size_t i = 0; i < n; ++i) {
        if (!active[i] || params.max_new_tokens == 0) {
          active[i] = false;
          continue;
        }
        GenerateResult& res = results[which[i]];
        const int32_t tok = next_token[i];
        if (std::find(params.stop_tokens.begin(), params.stop_tokens.end(), tok) != params.stop_tokens.end()) {
          res.finish_reason = "stop";
          active[i] = false;
          continue;
        }
        res.tokens.push_back(tok);
        seqs[i].push_back(tok);
        if (on_token && !on_token(which[i], tok)) {
          res.finish_reason = "callback";
          active[i] = false;
        } else if (static_cast<int64_t>(res.tokens.size()) >= params.max_new_tokens ||
                   static_cast<int64_t>(seqs[i].size()) >= options_.max_seq_len) {
          res.finish_reason = "length";
          active[i] = false;
        }
        const int64_t pos = static_cast<int64_t>(seqs[i].size()) - 1;
        pending[i] = {pending[i].slot, &seqs[i], pos, active[i] ? pos + 1 : pos, pos};
        any = any || active[i];
      }
      if (!any) break;
      Feed(pending, sample);
      if (non_finite.load()) return broken();
    }
    const double decode = Seconds(t0);
    for (size_t i = 0; i < n; ++i) {
      GenerateResult& res = results[which[i]];
      if (res.finish_reason.empty()) res.finish_reason = "length";
      res.prefill_seconds = prefill;
      res.decode_seconds = decode;
    }
  }
  return results;
}

}  // namespace dsv3
