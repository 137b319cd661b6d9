#include "eval/harness.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "engine/io/checkpoint.h"
#include "eval/progress.h"

namespace dsv3 {

using json = nlohmann::json;

namespace {

// fill(result) with a cached result's fields. A cache edited by hand, or written by another
// version, may hold a key whose result has another form: an input error naming the file,
// not an exception out of the run.
template <typename Fill>
Status FromCache(const RequestCache& cache, const std::string& hit, const Fill& fill) {
  try {
    fill(json::parse(hit));
  } catch (const json::exception& e) {
    return Status::Invalid(cache.path() + ": a cached result has an unexpected form (" + e.what() +
                           "); delete the file to start over");
  }
  return Status::Ok();
}

}  // namespace

Harness::Harness(Model* model, const Tokenizer* tokenizer, RequestCache* cache, HarnessOptions options)
    : model_(model), tokenizer_(tokenizer), cache_(cache), options_(options) {}

std::string Harness::Key(const std::string& task, const std::string& request) const {
  return StableHash(fingerprint_ + "\x1f" + task + "\x1f" + request);
}

Status Harness::EncodePair(const std::string& context_in, const std::string& continuation_in,
                           std::vector<int32_t>* context_ids, std::vector<int32_t>* continuation_ids) const {
  std::string context = context_in, continuation = continuation_in;
  const size_t kept = context.find_last_not_of(' ');
  const size_t n_spaces = kept == std::string::npos ? context.size() : context.size() - kept - 1;
  if (n_spaces > 0) {
    continuation = context.substr(context.size() - n_spaces) + continuation;
    context.resize(context.size() - n_spaces);
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> whole, tokenizer_->Encode(context + continuation));
  ASSIGN_OR_RETURN(std::vector<int32_t> ctx, tokenizer_->Encode(context));
  if (ctx.size() > whole.size()) ctx.resize(whole.size());
  continuation_ids->assign(whole.begin() + ctx.size(), whole.end());
  context_ids->clear();
  if (options_.add_bos || ctx.empty()) {
    // lm-eval scores an empty context from the prefix token (BOS, else EOS).
    auto bos = tokenizer_->bos_id() ? tokenizer_->bos_id() : tokenizer_->eos_id();
    if (!bos) return Status::Invalid("the tokenizer has no BOS/EOS token to start a request with");
    context_ids->push_back(*bos);
  }
  context_ids->insert(context_ids->end(), ctx.begin(), ctx.end());
  if (continuation_ids->empty()) return Status::Invalid("continuation \"" + continuation_in + "\" encodes to no tokens");
  return Status::Ok();
}

StatusOr<std::vector<LoglikResult>> Harness::Loglikelihood(const std::string& task,
                                                           const std::vector<LoglikRequest>& reqs) {
  std::vector<LoglikResult> out(reqs.size());
  std::vector<std::string> keys(reqs.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < reqs.size(); ++i) {
    keys[i] = Key(task, json::array({"loglik", reqs[i].context, reqs[i].continuation, options_.add_bos}).dump());
    if (auto hit = cache_->Lookup(keys[i])) {
      RETURN_IF_ERROR(FromCache(*cache_, *hit, [&](json j) {
        out[i] = {j["logprob"].get<double>(), j["greedy"].get<bool>(), j["n_tokens"].get<int64_t>(), j.value("truncated", 0)};
      }));
    } else {
      todo.push_back(i);
    }
  }
  Progress progress(task + " (loglikelihood)", static_cast<int64_t>(reqs.size()));
  progress.Add(static_cast<int64_t>(reqs.size() - todo.size()));
  const int64_t max_len = model_->options().max_seq_len;
  for (size_t c0 = 0; c0 < todo.size(); c0 += static_cast<size_t>(options_.chunk)) {
    const size_t c1 = std::min(todo.size(), c0 + static_cast<size_t>(options_.chunk));
    std::vector<ScoreRequest> batch;
    std::vector<int64_t> dropped;
    std::vector<size_t> scored;  // indices into todo of the requests in `batch`
    for (size_t j = c0; j < c1; ++j) {
      std::vector<int32_t> ctx, cont;
      // A request that cannot be built is recorded on its own result (and counted by the
      // task), never silently dropped, and does not stop the others.
      Status st = EncodePair(reqs[todo[j]].context, reqs[todo[j]].continuation, &ctx, &cont);
      ScoreRequest r;
      r.tokens = ctx;
      r.tokens.insert(r.tokens.end(), cont.begin(), cont.end());
      // Left-truncate to the model's window, keeping the whole continuation (lm-eval keeps
      // the last max_length + 1 tokens).
      int64_t drop = std::max<int64_t>(0, static_cast<int64_t>(r.tokens.size()) - (max_len + 1));
      if (st.ok() && drop >= static_cast<int64_t>(ctx.size()))
        st = Status::Invalid("continuation longer than --max-seq-len");
      if (!st.ok()) {
        out[todo[j]].error = st.message();
        continue;
      }
      r.tokens.erase(r.tokens.begin(), r.tokens.begin() + drop);
      r.score_from = static_cast<int64_t>(ctx.size()) - drop;
      batch.push_back(std::move(r));
      dropped.push_back(drop);
      scored.push_back(j);
    }
    ASSIGN_OR_RETURN(std::vector<ScoreResult> scores, model_->Score(batch));
    for (size_t b = 0; b < scored.size(); ++b) {
      const size_t j = scored[b];
      const ScoreResult& s = scores[b];
      LoglikResult& r = out[todo[j]];
      r = {s.sum, s.all_greedy, static_cast<int64_t>(s.logprobs.size()), dropped[b], ""};
      json stored = {{"logprob", r.logprob}, {"greedy", r.greedy}, {"n_tokens", r.n_tokens}, {"truncated", r.truncated}};
      RETURN_IF_ERROR(cache_->Append(keys[todo[j]], stored.dump()));
    }
    RETURN_IF_ERROR(cache_->Sync());
    progress.Add(static_cast<int64_t>(c1 - c0));
  }
  return out;
}

StatusOr<std::vector<GenResult>> Harness::GenerateUntil(const std::string& task, const std::vector<GenRequest>& reqs) {
  int64_t cut_prompts = 0;  // prompts longer than the window leaves them
  std::vector<GenResult> out(reqs.size());
  std::vector<std::string> keys(reqs.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenRequest& r = reqs[i];
    keys[i] = Key(task, json::array({"gen", r.prompt, r.stop, r.stop_tokens, r.max_new_tokens, r.sampling.temperature,
                                     r.sampling.top_p, r.sampling.top_k, r.sampling.seed, r.stream, options_.add_bos,
                                     r.add_special_tokens ? static_cast<int>(*r.add_special_tokens) : -1})
                            .dump());
    if (auto hit = cache_->Lookup(keys[i])) {
      RETURN_IF_ERROR(FromCache(*cache_, *hit, [&](json j) {
        out[i] = {j["text"].get<std::string>(), j["n_tokens"].get<int64_t>(), j["finish_reason"].get<std::string>()};
      }));
    } else {
      todo.push_back(i);
    }
  }
  Progress progress(task + " (generate)", static_cast<int64_t>(reqs.size()));
  progress.Add(static_cast<int64_t>(reqs.size() - todo.size()));
  const int64_t batch = std::max<int64_t>(1, model_->options().batch_size);
  const auto eos = tokenizer_->eos_id();
  for (size_t c0 = 0; c0 < todo.size();) {
    const size_t c1 = std::min(todo.size(), c0 + static_cast<size_t>(batch));
    // Requests in one engine call share sampling settings; split when they differ.
    std::vector<std::vector<int32_t>> prompts;
    std::vector<StreamDecoder> decoders;
    std::vector<std::string> texts(c1 - c0);
    GenerateParams gp;
    const GenRequest& first = reqs[todo[c0]];
    gp.sampling = first.sampling;
    gp.max_new_tokens = first.max_new_tokens;
    gp.stop_tokens = first.stop_tokens;
    if (eos) gp.stop_tokens.push_back(*eos);
    size_t end = c0;
    for (; end < c1; ++end) {
      const GenRequest& r = reqs[todo[end]];
      if (r.max_new_tokens != first.max_new_tokens || r.stop_tokens != first.stop_tokens ||
          r.sampling.temperature != first.sampling.temperature || r.sampling.top_p != first.sampling.top_p ||
          r.sampling.top_k != first.sampling.top_k || r.sampling.seed != first.sampling.seed)
        break;
      ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(r.prompt, r.add_special_tokens.value_or(false)));
      if (!r.add_special_tokens && options_.add_bos && tokenizer_->bos_id()) ids.insert(ids.begin(), *tokenizer_->bos_id());
      const int64_t room = model_->options().max_seq_len - r.max_new_tokens;
      if (room < 1) return Status::Invalid(task + ": --max-seq-len leaves no room for the prompt");
      if (static_cast<int64_t>(ids.size()) > room) {  // keep the end, as lm-eval does
        ids.erase(ids.begin(), ids.end() - room);
        ++cut_prompts;
      }
      prompts.push_back(std::move(ids));
      decoders.emplace_back(tokenizer_, /*skip_special_tokens=*/true);
      gp.streams.push_back(r.stream);
    }
    Status decode_error;
    const int32_t tokenizer_vocab = tokenizer_->vocab_size();
    auto on_token = [&](size_t i, int32_t tok) {
      // Checkpoints pad the embedding past the tokenizer (V3: 129280 rows, 128815 tokens).
      // A padding id has no text; Hugging Face's decode drops it, and so do we.
      if (tok >= tokenizer_vocab) return true;
      Status st = decoders[i].Push(tok, &texts[i]);
      if (!st.ok()) decode_error = st;
      for (const auto& s : reqs[todo[c0 + i]].stop)
        if (texts[i].find(s) != std::string::npos) return false;
      return true;
    };
    ASSIGN_OR_RETURN(std::vector<GenerateResult> gen, model_->Generate(prompts, gp, on_token));
    RETURN_IF_ERROR(decode_error);
    for (size_t i = 0; i < gen.size(); ++i) {
      decoders[i].Finish(&texts[i]);
      const GenRequest& r = reqs[todo[c0 + i]];
      size_t cut = texts[i].size();
      for (const auto& s : r.stop) cut = std::min(cut, texts[i].find(s) == std::string::npos ? cut : texts[i].find(s));
      GenResult& g = out[todo[c0 + i]];
      g.text = texts[i].substr(0, cut);
      g.n_tokens = static_cast<int64_t>(gen[i].tokens.size());
      g.finish_reason = gen[i].finish_reason == "length" ? "length" : "stop";
      json stored = {{"text", g.text}, {"n_tokens", g.n_tokens}, {"finish_reason", g.finish_reason}};
      RETURN_IF_ERROR(cache_->Append(keys[todo[c0 + i]], stored.dump()));
    }
    RETURN_IF_ERROR(cache_->Sync());
    progress.Add(static_cast<int64_t>(end - c0));
    c0 = end;
  }
  if (cut_prompts > 0)  // said, not silent: the scores are of shortened prompts
    std::cerr << task << ": " << cut_prompts << " of " << todo.size()
              << " prompts did not fit --max-seq-len with their answer budget and lost their beginning (as lm-eval cuts them)\n";
  return out;
}

StatusOr<RollingResult> Harness::Rolling(const std::string& task, const std::string& text, int64_t stride) {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(text));
  if (options_.add_bos && tokenizer_->bos_id()) ids.insert(ids.begin(), *tokenizer_->bos_id());
  const int64_t n = static_cast<int64_t>(ids.size()), window = model_->options().max_seq_len;
  if (stride < 1 || stride > window) return Status::Invalid("--perplexity-stride must be in [1, --max-seq-len]");
  if (n < 2) return Status::Invalid(task + ": the text has fewer than 2 tokens");
  // Hugging Face's sliding-window perplexity: windows of `window` tokens every `stride`
  // tokens; each window scores only the tokens the previous one did not.
  std::vector<ScoreRequest> reqs;
  int64_t prev_end = 1;  // token 0 has no context to be scored from
  for (int64_t begin = 0; prev_end < n; begin += stride) {
    const int64_t end = std::min(begin + window, n);
    if (end <= prev_end) continue;
    ScoreRequest r;
    r.tokens.assign(ids.begin() + begin, ids.begin() + end);
    r.score_from = std::max<int64_t>(1, prev_end - begin);
    reqs.push_back(std::move(r));
    prev_end = end;
  }
  RollingResult out;
  out.windows = static_cast<int64_t>(reqs.size());
  const std::string key = Key(task, json::array({"rolling", text, stride, window, options_.add_bos}).dump());
  if (auto hit = cache_->Lookup(key)) {
    RETURN_IF_ERROR(FromCache(*cache_, *hit, [&](json j) {
      out.nll = j["nll"].get<double>();
      out.tokens = j["tokens"].get<int64_t>();
    }));
    return out;
  }
  Progress progress(task + " (windows)", out.windows);
  for (size_t c0 = 0; c0 < reqs.size(); c0 += static_cast<size_t>(options_.chunk)) {
    const size_t c1 = std::min(reqs.size(), c0 + static_cast<size_t>(options_.chunk));
    std::vector<ScoreRequest> part(reqs.begin() + c0, reqs.begin() + c1);
    ASSIGN_OR_RETURN(std::vector<ScoreResult> scores, model_->Score(part));
    for (const auto& s : scores) {
      out.nll -= s.sum;
      out.tokens += static_cast<int64_t>(s.logprobs.size());
    }
    progress.Add(static_cast<int64_t>(c1 - c0));
  }
  RETURN_IF_ERROR(cache_->Append(key, json({{"nll", out.nll}, {"tokens", out.tokens}}).dump()));
  RETURN_IF_ERROR(cache_->Sync());
  return out;
}

StatusOr<std::string> CheckpointFingerprint(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(JoinPath(dir, "config.json")));
  ASSIGN_OR_RETURN(auto ck, Checkpoint::Open(dir));
  for (const auto& f : ck->files()) {
    text += "\x1f" + f->path().substr(f->path().find_last_of('/') + 1) + ":" + std::to_string(f->file_size());
    for (const auto& e : f->entries())
      text += "\x1e" + e.name + DTypeName(e.dtype) + e.shape.ToString() + std::to_string(e.begin);
  }
  return StableHash(text);
}

}  // namespace dsv3
