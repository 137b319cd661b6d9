// LongBench v1: prompts exactly as the official pred.py builds them (template, middle
// truncation on tokens, chat wrapping for the non-few-shot tasks, greedy decoding, samsum's
// newline stop), scored by eval.py's scorer / scorer_e. Or, with --predictions, scoring of
// pred.py output files made elsewhere. See ../shared/datasets/longbench/METRICS.md.
#include <dirent.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/base/file.h"
#include "engine/io/chat_template.h"
#include "eval/longbench_jieba.h"
#include "eval/longbench_metrics.h"
#include "eval/tasks.h"

namespace dsv3 {

namespace {

// pred.py feeds these raw (few-shot and code completion), everything else through the chat
// wrapper.
bool RawPromptDataset(const std::string& d) {
  static const std::set<std::string> kRaw = {"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"};
  return kRaw.count(d) != 0;
}

bool ChineseDataset(const std::string& d) {
  const std::string metric = LongBenchMetricName(d);
  return metric.size() > 3 && metric.find("_zh") != std::string::npos;
}

std::string BaseDataset(const std::string& stem) {
  return stem.size() > 2 && stem.compare(stem.size() - 2, 2, "_e") == 0 ? stem.substr(0, stem.size() - 2) : stem;
}

StatusOr<std::vector<std::string>> ListStems(const std::string& dir) {
  std::vector<std::string> stems;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::NotFound(dir + ": no such directory");
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 6 && n.compare(n.size() - 6, 6, ".jsonl") == 0) stems.push_back(n.substr(0, n.size() - 6));
  }
  ::closedir(d);
  std::sort(stems.begin(), stems.end());
  return stems;
}

}  // namespace

StatusOr<LongBenchTaskData> LoadLongBenchTask(const LongBenchTaskOptions& o) {
  LongBenchTaskData d;
  ASSIGN_OR_RETURN(d.config, ReadLongBenchConfig(o.config_dir.empty() ? JoinPath(o.dir, "config") : o.config_dir));
  const std::string from = o.predictions.empty() ? o.dir : o.predictions;
  std::vector<std::string> stems = o.datasets;
  if (stems.empty()) {
    ASSIGN_OR_RETURN(stems, ListStems(from));
  }
  if (stems.empty()) return Status::NotFound(from + ": no <dataset>.jsonl files");
  bool need_jieba = false;
  for (const auto& stem : stems) {
    const std::string base = BaseDataset(stem);
    if (LongBenchMetricName(base).empty() || !d.config.prompt.count(base))
      return Status::Invalid(JoinPath(from, stem + ".jsonl") + ": \"" + base + "\" is not a LongBench dataset");
    need_jieba = need_jieba || ChineseDataset(base);
    const std::string path = JoinPath(from, stem + ".jsonl");
    if (!o.predictions.empty()) {
      ASSIGN_OR_RETURN(auto preds, ReadLongBenchPredictions(path));
      if (preds.empty()) return Status::Invalid(path + ": no predictions");
      if (o.limit > 0 && static_cast<int64_t>(preds.size()) > o.limit) preds.resize(o.limit);
      d.predictions[stem] = std::move(preds);
    } else {
      ASSIGN_OR_RETURN(auto recs, ReadLongBench(path));
      if (recs.empty()) return Status::Invalid(path + ": no records");  // found before any model work
      if (o.limit > 0 && static_cast<int64_t>(recs.size()) > o.limit) recs.resize(o.limit);
      for (const auto& r : recs) RETURN_IF_ERROR(FillLongBenchPrompt(d.config.prompt.at(base), r).status().WithPrefix(path + ":" + std::to_string(r.line) + ": "));
      d.records[stem] = std::move(recs);
    }
  }
  if (need_jieba) RETURN_IF_ERROR(DefaultJieba().status());  // fail before any model work
  return d;
}

namespace {

// Scores one dataset's predictions into r.
Status ScoreDataset(const std::string& stem, const std::vector<LongBenchSample>& samples,
                    const std::vector<std::string>& all_classes, const std::vector<std::string>& ids,
                    EvalResults* r) {
  const std::string base = BaseDataset(stem);
  const JiebaSegmenter* jieba = nullptr;
  if (ChineseDataset(base)) {
    ASSIGN_OR_RETURN(jieba, DefaultJieba());
  }
  std::vector<double> per_sample;
  ASSIGN_OR_RETURN(double score, LongBenchScore(base, samples, all_classes, jieba, &per_sample));
  TaskMetrics& m = r->tasks["longbench_" + stem];
  m.n_samples = static_cast<int64_t>(samples.size());
  if (stem != base) {  // LongBench-E: eval.py --e reports the length buckets
    ASSIGN_OR_RETURN(auto buckets, LongBenchScoreE(base, samples, all_classes, jieba));
    for (const auto& [bucket, v] : buckets)
      if (v == v) m.values["score_" + bucket] = v;  // NaN (empty bucket) is left out
  }
  m.values["score"] = score;
  for (size_t i = 0; i < samples.size(); ++i) {
    nlohmann::json log = {{"task", "longbench_" + stem}, {"id", ids[i]}, {"pred", samples[i].prediction},
                          {"answers", samples[i].answers}, {"length", samples[i].length}, {"score", per_sample[i]}};
    r->sample_log.push_back(log.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return Status::Ok();
}

}  // namespace

Status RunLongBench(Harness* h, const LongBenchTaskData& data, const LongBenchTaskOptions& o,
                    const std::string& tokenizer_dir, EvalResults* r) {
  std::vector<double> scores;
  for (const auto& [stem, preds] : data.predictions) {
    std::vector<LongBenchSample> samples;
    std::vector<std::string> ids;
    std::vector<std::string> all_classes;
    for (const auto& p : preds) {
      samples.push_back({p.pred, p.answers, p.length});
      ids.push_back(std::to_string(p.line));
      if (p.all_classes) all_classes = *p.all_classes;  // eval.py keeps the last record's
    }
    RETURN_IF_ERROR(ScoreDataset(stem, samples, all_classes, ids, r));
    scores.push_back(r->tasks["longbench_" + stem].values["score"]);
  }
  if (!data.records.empty()) {
    if (!h) return Status::Invalid("longbench needs a model (or --predictions DIR)");
    std::optional<ChatTemplate> chat;
    if (o.chat) {
      ASSIGN_OR_RETURN(chat, ChatTemplate::Load(tokenizer_dir));
    }
    const Tokenizer& tok = h->tokenizer();
    for (const auto& [stem, recs] : data.records) {
      const std::string base = BaseDataset(stem);
      const int64_t max_new = data.config.maxlen.at(base);
      const int64_t budget = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : h->model().options().max_seq_len - max_new;
      if (budget < 2)  // pred.py's middle truncation keeps budget / 2 tokens from each end
        return Status::Invalid("longbench_" + stem + " answers in up to " + std::to_string(max_new) +
                               " tokens: --max-seq-len " + std::to_string(h->model().options().max_seq_len) +
                               " leaves the prompt no room (give at least " + std::to_string(max_new + 2) + ")");
      std::vector<GenRequest> reqs;
      for (size_t i = 0; i < recs.size(); ++i) {
        ASSIGN_OR_RETURN(std::string prompt, FillLongBenchPrompt(data.config.prompt.at(base), recs[i]));
        ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(prompt, /*add_special_tokens=*/true));
        if (static_cast<int64_t>(ids.size()) > budget) {  // middle truncation (pred.py)
          const size_t half = static_cast<size_t>(budget / 2);
          ASSIGN_OR_RETURN(std::string head, tok.Decode(std::span<const int32_t>(ids.data(), half), true));
          ASSIGN_OR_RETURN(std::string tail, tok.Decode(std::span<const int32_t>(ids.data() + ids.size() - half, half), true));
          prompt = head + tail;
        }
        GenRequest g;
        if (chat && !RawPromptDataset(base)) {
          ASSIGN_OR_RETURN(g.prompt, chat->Render({{"user", prompt, {}}}, /*add_generation_prompt=*/true));
          g.add_special_tokens = false;  // the template already starts with BOS
        } else {
          g.prompt = prompt;
          g.add_special_tokens = true;  // BOS + prompt
        }
        g.max_new_tokens = max_new;
        if (base == "samsum") {
          ASSIGN_OR_RETURN(std::vector<int32_t> nl, tok.Encode("\n"));
          if (!nl.empty()) g.stop_tokens.push_back(nl.back());
        }
        g.stream = i;
        reqs.push_back(std::move(g));
      }
      ASSIGN_OR_RETURN(std::vector<GenResult> gen, h->GenerateUntil("longbench_" + stem, reqs));
      std::vector<LongBenchSample> samples;
      std::vector<std::string> ids, all_classes;
      for (size_t i = 0; i < recs.size(); ++i) {
        samples.push_back({gen[i].text, recs[i].answers, recs[i].length});
        ids.push_back(recs[i].id);
        if (recs[i].all_classes) all_classes = *recs[i].all_classes;
      }
      RETURN_IF_ERROR(ScoreDataset(stem, samples, all_classes, ids, r));
      scores.push_back(r->tasks["longbench_" + stem].values["score"]);
    }
  }
  double avg = 0;
  for (double s : scores) avg += s / static_cast<double>(scores.size());
  TaskMetrics& all = r->tasks["longbench"];
  all.values["score"] = avg;
  all.n_samples = static_cast<int64_t>(scores.size());
  r->info["longbench"] = std::string("pred.py prompts (config 2e00731f), middle truncation, ") +
                         (o.chat ? "DeepSeek-V3 chat template" : "raw prompts") + ", greedy";
  return Status::Ok();
}

}  // namespace dsv3
