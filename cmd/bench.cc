// dsv3 bench: prefill and decode speed of a checkpoint, llama-bench style, with the roofline
// next to each figure. The ceilings are measured in the same run (read bandwidth, FMA peak at
// the width of the kernel family in use); the work is counted from what the run did, per
// token: weight bytes read (only the experts it routed to; decode adds the latent cache it
// reads) and FLOPs. A test's roofline is the
// slower of its two floors, bytes at the read bandwidth and FLOPs at the FMA peak: decode at
// batch 1 is bound by memory and a long prefill by compute, but a short prompt reads every
// weight for a few tokens, and a large decode batch does many FLOPs per byte. Products with
// int8 activations count against the int8 peak: with AVX-512 VNNI a vpdpbusd loop's, with
// AVX2 a vpmaddubsw loop's (32 products an instruction, four times the FMA peak on Zen 3; the
// exact int32 sums also take vpmaddwd and adds, so kernels reach a smaller share of it);
// products with bf16 activations (--activations bf16) against a vdpbf16ps
// loop's peak; their shares are reported. Each test
// also reports where its forward steps spent their time (attention, MoE, dense MLP, lm_head),
// per token.
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "engine/base/threads.h"
#include "engine/base/version.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/machine_probe.h"
#include "engine/kernels/ops.h"
#include "engine/model/tensor_table.h"
#include "engine/model/transformer.h"

namespace dsv3::cmd {

namespace {

// A comma list of integers in [min, max].
StatusOr<std::vector<int64_t>> ParseList(const std::string& name, const std::string& text, int64_t min,
                                         int64_t max = std::numeric_limits<int64_t>::max()) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t pos = 0;
      const long long v = std::stoll(item, &pos);
      if (pos != item.size() || v < min || v > max) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (...) {
      return Status::Invalid("--" + name + ": \"" + item + "\" is not an integer >= " + std::to_string(min) +
                             (max < std::numeric_limits<int64_t>::max() ? " and <= " + std::to_string(max) : ""));
    }
  }
  if (out.empty()) return Status::Invalid("--" + name + ": empty list");
  return out;
}

// One test's tokens/s over its repetitions: the table's median, min and max, and llama-bench's
// mean and sample standard deviation with the samples themselves (its JSON fields).
struct Stats {
  double median = 0, min = 0, max = 0, mean = 0, stddev = 0;
  std::vector<double> samples;  // in run order
};
Stats Summarize(std::vector<double> v) {
  Stats s;
  s.samples = v;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.min = v.front();
  s.max = v.back();
  for (double x : v) s.mean += x / static_cast<double>(n);
  if (n > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(n - 1));
  }
  return s;
}

// Peak resident set (VmHWM), bytes; the mmap'd weight pages that were touched count too.
int64_t PeakRssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

// Lowers the peak resident set (VmHWM) to the current one (Linux's clear_refs "5"), so that a
// probe's buffer, freed, leaves no trace in the peak the bench reports; false where the file
// cannot be written.
bool ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

// The checkpoint's pages this process has mapped (smaps' Rss of its .safetensors mappings)
// and how many of those bytes are 2 MiB pages (FilePmdMapped): all of them where the page
// cache holds the files in 2 MiB folios (see MappedFile and AtomicFile). With 4 KiB pages
// decode pays a TLB miss per page of every weight it streams.
struct WeightPages {
  int64_t mapped = 0, huge = 0;
};
WeightPages CheckpointPages() {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  WeightPages pages;
  bool checkpoint = false;  // the current mapping is a checkpoint file's
  const std::string suffix = ".safetensors";
  const auto kib = [&](size_t prefix) { return std::stoll(line.substr(prefix)) * 1024; };
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < line.find(' ')) {
      checkpoint = line.size() > suffix.size() && line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0;
    } else if (checkpoint && line.rfind("Rss:", 0) == 0) {
      pages.mapped += kib(4);
    } else if (checkpoint && line.rfind("FilePmdMapped:", 0) == 0) {
      pages.huge += kib(14);
    }
  }
  return pages;
}

// The forward's stages, in the order the table names them.
constexpr std::pair<const char*, double StageSeconds::*> kStages[] = {
    {"attention", &StageSeconds::attention}, {"moe", &StageSeconds::moe},        {"dense_mlp", &StageSeconds::dense_mlp},
    {"lm_head", &StageSeconds::lm_head},     {"other", &StageSeconds::other}};

// sum += f · a, stage by stage.
void AddScaled(StageSeconds* sum, const StageSeconds& a, double f) {
  for (const auto& [name, field] : kStages) sum->*field += f * a.*field;
}

nlohmann::json StagesJson(const StageSeconds& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, field] : kStages) j[name] = s.*field;
  return j;
}

struct Row {
  std::string test;
  int64_t threads = 0, depth = 0, tokens = 0, batch = 1;
  Stats tps;
  Stats seconds;  // each repetition's run time (llama-bench's samples_ns)
  double bytes_per_token = 0, flops_per_token = 0, int8_flops_per_token = 0, bf16_flops_per_token = 0;
  double roofline_tps = 0;
  bool compute_bound = false;  // the FLOP floor is the higher one
  StageSeconds stages;  // forward seconds per token by stage, mean over the repetitions
};

}  // namespace

int RunBench(int argc, char** argv) {
  OptionParser opts("bench", "Prefill (ppN) and decode (tgN) tokens/s with rooflines, llama-bench style.");
  opts.Add()("model-path", po::value<std::string>()->required(), "checkpoint directory")(
      "prompt-len", po::value<int64_t>()->default_value(512), "prefill tokens (ppN); 0 skips prefill")(
      "gen-len", po::value<int64_t>()->default_value(128), "decoded tokens (tgN); 0 skips decode")(
      "depth", po::value<std::string>()->default_value("0"), "context already in the cache, comma list")(
      "threads", po::value<std::string>()->default_value("0"), "thread counts, comma list (0: all cores)")(
      "batch-size", po::value<std::string>()->default_value("1"),
      "sequences prefilled and decoded together, comma list (an eval's generation batch); t/s counts all "
      "of their tokens")(
      "repetitions", po::value<int64_t>()->default_value(5), "runs per test; median, min, max reported")(
      "kernels", po::value<std::string>()->default_value("auto"), "auto | reference | avx2 | avx512 (Linear kernels; avx512: avx2 with AVX-512 where it has kernels, the same bits)")(
      "activations", po::value<std::string>()->default_value("int8"), kActivationsHelp)(
      "kv-cache-dtype", po::value<std::string>()->default_value("f32"), kKvCacheDtypeHelp)(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the random prompt tokens")(
      "probe-mib", po::value<int64_t>()->default_value(512), "buffer of the read-bandwidth probe (>> last-level cache)")(
      "json", po::bool_switch(), "print JSON instead of the table");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("bench", st);
  if (opts.help()) return kExitOk;
  auto depths = ParseList("depth", opts.Get<std::string>("depth"), 0);
  if (!depths.ok()) return ReportError("bench", depths.status());
  auto threads = ParseList("threads", opts.Get<std::string>("threads"), 0, kMaxThreads);
  if (!threads.ok()) return ReportError("bench", threads.status());
  auto batches = ParseList("batch-size", opts.Get<std::string>("batch-size"), 1);
  if (!batches.ok()) return ReportError("bench", batches.status());
  const int64_t P = opts.Get<int64_t>("prompt-len"), G = opts.Get<int64_t>("gen-len");
  const int64_t reps = opts.Get<int64_t>("repetitions");
  if (P < 0 || G < 0 || (P == 0 && G == 0) || reps < 1)
    return ReportError("bench", Status::Invalid("need --prompt-len >= 0, --gen-len >= 0 (not both 0), --repetitions >= 1"));
  {
    const int64_t deepest = *std::max_element(depths.value().begin(), depths.value().end());
    // A test past the model's context measures nothing a user runs, and a typo (--prompt-len
    // 1000000000) would prefill for days: refused before the probes run and the cache is sized.
    const std::string config_path = JoinPath(opts.Get<std::string>("model-path"), "config.json");
    auto config = LoadHfConfig(config_path);
    if (!config.ok()) return ReportError("bench", config.status());
    // ppN fills the depth and N positions, tgN the depth and N (a one-token prompt, then N - 1
    // tokens fed back): the runs are apart (see the repetitions below).
    const int64_t limit = config.value().max_position_embeddings;
    int64_t positions = 0;
    if (__builtin_add_overflow(deepest, std::max(P, G), &positions) || positions > limit)
      return ReportError("bench", Status::Invalid("--depth " + std::to_string(deepest) + " + " +
                                                  (P >= G ? "--prompt-len " + std::to_string(P)
                                                          : "--gen-len " + std::to_string(G)) +
                                                  " positions are past max_position_embeddings " +
                                                  std::to_string(limit) + " of " + config_path));
  }
  const std::string kernels = opts.Get<std::string>("kernels");
  if (kernels == "auto") {
    SetLinearKernel(LinearKernel::kAuto);
  } else if (kernels == "reference") {
    SetLinearKernel(LinearKernel::kReference);
  } else if (kernels == "avx2") {
    if (!GetCpuFeatures().HasAvx2Set()) return ReportError("bench", Status::Invalid("--kernels avx2: this CPU lacks AVX2/FMA/F16C"));
    SetLinearKernel(LinearKernel::kAvx2);
  } else if (kernels == "avx512") {
    if (!GetCpuFeatures().HasAvx512VnniSet())
      return ReportError("bench", Status::Invalid("--kernels avx512: this CPU lacks AVX-512 F/BW/VL/VNNI (or AVX2/FMA/F16C)"));
    SetLinearKernel(LinearKernel::kAvx512);
  } else {
    return ReportError("bench", Status::Invalid("--kernels must be auto, reference, avx2 or avx512"));
  }

  st = ApplyActivationsOption(opts.Get<std::string>("activations"));
  if (!st.ok()) return ReportError("bench", st);
  // Another family would run bf16 products on their scalar twin: exact, and far too slow to time.
  if (GetLinearActivations() == LinearActivations::kBf16 && !Bf16KernelActive())
    return ReportError("bench", Status::Invalid("--activations bf16 runs on the avx512 kernels only, not --kernels " + kernels));

  const auto kv_cache = ParseKvCacheDtype(opts.Get<std::string>("kv-cache-dtype"));
  if (!kv_cache.ok()) return ReportError("bench", kv_cache.status());

  const int64_t probe_bytes = opts.Get<int64_t>("probe-mib") << 20;
  if (probe_bytes <= 0) return ReportError("bench", Status::Invalid("--probe-mib must be >= 1"));
  // Ceilings per thread count, measured before the model loads, again after each test (the
  // read bandwidth only where the peak RSS can be reset), and all of them after the runs; the
  // higher reading is kept, since a shared machine only ever makes a probe slower. (Probed only
  // before and after, a run on this EPYC, whose bandwidth moved between 33 and 65 GB/s within
  // minutes, printed 112% of a roofline whose two probes had both met a slow phase; with the
  // compute peaks probed only then, an FP8 pp512 printed 94% of an FMA peak read at 116 of ~200
  // GFLOP/s.)
  struct Ceiling {
    // bytes/s, FLOP/s, int8 products/s (0: at the FMA peak), bf16 FLOP/s (0: none measured)
    double read = 0, flops = 0, int8 = 0, bf16 = 0;
  };
  std::map<int64_t, Ceiling> ceiling;  // per thread count
  auto probe_compute = [&](Ceiling& c) {  // on the current thread count
    c.flops = std::max(c.flops, MeasurePeakFlops(0.3));
    c.int8 = std::max(c.int8, MeasurePeakInt8Ops(0.3));
    if (GetLinearActivations() == LinearActivations::kBf16) c.bf16 = std::max(c.bf16, MeasurePeakBf16Flops(0.3));
  };
  auto probe = [&]() {
    for (int64_t nt : threads.value()) {
      SetNumThreads(static_cast<int>(nt));
      Ceiling& c = ceiling[NumThreads()];
      c.read = std::max(c.read, MeasureReadBandwidth(probe_bytes));
      probe_compute(c);
    }
  };
  probe();
  // The probe's 512 MiB had been the peak RSS of every small model (bench-v3-tiny: 0.51 GiB for
  // 0.29 of weights). Where the peak cannot be lowered, no probe runs between the tests.
  const bool probe_between = ResetPeakRss();
  int64_t peak_rss = 0;  // the highest VmHWM read before a probe

  ModelOptions mo;
  const int64_t max_depth = *std::max_element(depths.value().begin(), depths.value().end());
  // The longer test's positions (checked above), and one spare.
  mo.max_seq_len = max_depth + std::max(P, G) + 1;
  mo.batch_size = *std::max_element(batches.value().begin(), batches.value().end());
  mo.kv_cache = kv_cache.value();
  auto loaded = Model::Load(opts.Get<std::string>("model-path"), mo);
  if (!loaded.ok()) return ReportError("bench", loaded.status());
  Model& model = *loaded.value();
  const ModelConfig& c = model.config();

  std::mt19937_64 rng(opts.Get<uint64_t>("seed"));
  std::uniform_int_distribution<int32_t> tok(2, static_cast<int32_t>(c.vocab_size - 1));
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = tok(rng);
    return v;
  };

  LinearCounters counters;
  SetLinearCounters(&counters);
  StageSeconds stages;
  SetStageSeconds(&stages);
  std::vector<Row> rows;
  const int64_t L = c.num_hidden_layers, C = c.kv_lora_rank, R = c.qk_rope_head_dim;
  for (int64_t depth : depths.value()) {
    const std::vector<int32_t> context = random_tokens(depth);
    for (int64_t nt : threads.value()) {
      SetNumThreads(static_cast<int>(nt));
      const int64_t used_threads = NumThreads();
      if (depth > 0) {  // fills every slot's cache once; every repetition below reuses it as a prefix
        GenerateParams fill;
        fill.max_new_tokens = 1;
        auto r = model.Generate(std::vector<std::vector<int32_t>>(static_cast<size_t>(mo.batch_size), context), fill);
        if (!r.ok()) return ReportError("bench", r.status());
      }
      for (int64_t B : batches.value()) {
        std::vector<double> pp, tg, pp_s, tg_s;  // tokens/s and seconds of each repetition
        LinearCounters::Totals pp_work, tg_work;  // one repetition's prefill and decode work
        double pp_tokens = 1, tg_tokens = 1;      // and the tokens each was for
        StageSeconds pp_stages, tg_stages;  // per token, mean over the repetitions
        // Repetition -1 is a warm-up: it maps the weight pages in and wakes the pool. ppN and
        // tgN are separate runs from the depth's context, as llama-bench's are: ppN prefills N
        // fresh tokens (and samples one); tgN decodes N - 1 steps after a one-token prompt, so
        // its context is the depth, not the depth and ppN's prompt (decoding after a 512-token
        // prompt, attention alone took ~0.5 ms a token more on bench-v3-mini INT4-h than from 0).
        for (int64_t rep = -1; rep < reps; ++rep) {
          // One run of B sequences, each the context and `fresh` new tokens, generating `gen`.
          // Returns its first sequence's result (the batch's times; every sequence decodes as
          // many steps), with the counters and stages read when the prefill was done.
          LinearCounters::Totals at_first;
          StageSeconds stages_at_first;
          const auto run = [&](int64_t fresh, int64_t gen) -> StatusOr<GenerateResult> {
            std::vector<std::vector<int32_t>> prompts;
            for (int64_t b = 0; b < B; ++b) {
              prompts.push_back(context);
              const auto tokens = random_tokens(fresh);
              prompts.back().insert(prompts.back().end(), tokens.begin(), tokens.end());
            }
            GenerateParams gp;
            gp.max_new_tokens = gen;
            counters.Reset();
            stages = StageSeconds{};
            bool first = true;
            auto r = model.Generate(prompts, gp, [&](size_t, int32_t) {
              if (first) {  // the prefill is done; what follows is decode
                at_first = counters.Read();
                stages_at_first = stages;
                first = false;
              }
              return true;
            });
            if (!r.ok()) return r.status();
            return std::move(r.value()[0]);
          };
          const double tokens = static_cast<double>(B);
          if (P > 0) {
            auto r = run(P, 1);
            if (!r.ok()) return ReportError("bench", r.status());
            if (rep >= 0) {
              pp.push_back(tokens * static_cast<double>(P) / std::max(r.value().prefill_seconds, 1e-9));
              pp_s.push_back(r.value().prefill_seconds);
              pp_work = at_first;
              pp_tokens = tokens * static_cast<double>(P);
              AddScaled(&pp_stages, stages_at_first, 1.0 / (tokens * static_cast<double>(P * reps)));
            }
          }
          if (G > 1) {
            auto r = run(1, G);
            if (!r.ok()) return ReportError("bench", r.status());
            const GenerateResult& g = r.value();
            const int64_t steps = static_cast<int64_t>(g.tokens.size()) - 1;
            if (rep >= 0 && steps > 0) {
              tg.push_back(tokens * static_cast<double>(steps) / std::max(g.decode_seconds, 1e-9));
              tg_s.push_back(g.decode_seconds);
              const double per_token = 1.0 / (tokens * static_cast<double>(steps * reps));
              AddScaled(&tg_stages, stages, per_token);
              AddScaled(&tg_stages, stages_at_first, -per_token);
              // A step reads each weight it touches once for all B sequences.
              const LinearCounters::Totals all = counters.Read();
              tg_work.weight_bytes = all.weight_bytes - at_first.weight_bytes;
              tg_work.flops = all.flops - at_first.flops;
              tg_work.int8_flops = all.int8_flops - at_first.int8_flops;
              tg_work.bf16_flops = all.bf16_flops - at_first.bf16_flops;
              tg_tokens = tokens * static_cast<double>(steps);
            }
          }
        }
        // The prefill's FLOPs are counted as they run (attention's in the form MLA picked for
        // each chunk: engine/model/mla.cc). A decode step also reads the latent cache (each
        // sequence its own), which the weight-byte counters do not see.
        const double tg_ctx = static_cast<double>(depth + 1) + static_cast<double>(G) / 2;
        const double cache_bytes =
            static_cast<double>(L) * tg_ctx * static_cast<double>((C + R) * model.kv_cache_value_bytes());
        const std::string at = (B > 1 ? " x" + std::to_string(B) : "") + (depth > 0 ? " @ d" + std::to_string(depth) : "");
        const auto row = [&](const std::string& test, int64_t tokens, const std::vector<double>& tps,
                             const std::vector<double>& seconds, const LinearCounters::Totals& work, double over,
                             double extra_bytes, const StageSeconds& st) {
          Row r{test + at, used_threads, depth, tokens, B, Summarize(tps), Summarize(seconds)};
          r.bytes_per_token = static_cast<double>(work.weight_bytes) / over + extra_bytes;
          r.flops_per_token = static_cast<double>(work.flops) / over;
          r.int8_flops_per_token = static_cast<double>(work.int8_flops) / over;
          r.bf16_flops_per_token = static_cast<double>(work.bf16_flops) / over;
          r.stages = st;
          rows.push_back(r);
        };
        if (P > 0) row("pp" + std::to_string(P), P, pp, pp_s, pp_work, pp_tokens, 0, pp_stages);
        if (G > 1) row("tg" + std::to_string(G), G, tg, tg_s, tg_work, tg_tokens, cache_bytes, tg_stages);
        Ceiling& c = ceiling[used_threads];
        if (probe_between) {
          peak_rss = std::max(peak_rss, PeakRssBytes());
          c.read = std::max(c.read, MeasureReadBandwidth(probe_bytes));
          ResetPeakRss();
        }
        probe_compute(c);  // allocates nothing: after every test
      }
    }
  }
  SetLinearCounters(nullptr);
  SetStageSeconds(nullptr);
  peak_rss = std::max(peak_rss, PeakRssBytes());  // before the last probe allocates its buffer
  const WeightPages weight_pages = CheckpointPages();
  // A row's 64-byte loads straddle two cache lines where its tensor does not start on one.
  const uint64_t tensor_bytes = model.checkpoint_tensor_bytes(), aligned = model.checkpoint_line_aligned_bytes();

  probe();
  std::vector<Ceiling> ceilings;  // per row
  for (Row& row : rows) {
    Ceiling c = ceiling[row.threads];
    if (c.int8 <= 0) c.int8 = c.flops;
    if (c.bf16 <= 0) c.bf16 = c.flops;
    const double memory_s = c.read > 0 ? row.bytes_per_token / c.read : 0;
    const double float_flops = row.flops_per_token - row.int8_flops_per_token - row.bf16_flops_per_token;
    const double compute_s = c.flops > 0 ? float_flops / c.flops + row.int8_flops_per_token / c.int8 +
                                               row.bf16_flops_per_token / c.bf16
                                         : 0;
    row.compute_bound = compute_s > memory_s;
    const double floor_s = std::max(memory_s, compute_s);
    row.roofline_tps = floor_s > 0 ? 1.0 / floor_s : 0;
    ceilings.push_back(c);
  }
  nlohmann::json out = nlohmann::json::array();

  const double gib = 1024.0 * 1024.0 * 1024.0;
  // The activations matter only for INT8/INT4 weights (and BF16 ones under bf16), but are named always.
  // So is a bf16 KV cache (the float32 default is not, as llama-bench omits its f16 default).
  const std::string kv_type = opts.Get<std::string>("kv-cache-dtype");
  const std::string kernel_name = std::string(LinearKernelName(ActiveLinearKernel())) + " act=" +
                                  LinearActivationsName(GetLinearActivations()) +
                                  (kv_type == "f32" ? "" : " kv=" + kv_type);
  if (opts.Get<bool>("json")) {
    const int64_t n_params = CountParams(model.config()).total;
    char test_time[32];
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    std::strftime(test_time, sizeof test_time, "%Y-%m-%dT%H:%M:%SZ", &utc);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      const bool decode = r.test.rfind("tg", 0) == 0;
      std::vector<int64_t> samples_ns;
      for (double sec : r.seconds.samples) samples_ns.push_back(std::llround(sec * 1e9));
      out.push_back({{"model", opts.Get<std::string>("model-path")},
                     {"model_size_bytes", model.checkpoint_bytes()},
                     {"kernels", kernel_name},
                     {"cpu_features", GetCpuFeatures().ToString()},
                     {"threads", r.threads},
                     {"test", r.test},
                     {"n_depth", r.depth},
                     {"n_batch", r.batch},
                     {"type_k", kv_type},  // llama-bench's names for its cache types
                     {"type_v", kv_type},
                     // llama-bench's fields, with its meanings, so that its readers take these
                     // rows as they are: avg_ts is the mean over repetitions (median_ts is the
                     // table's figure), n_prompt and n_gen are both present (0 for the other).
                     {"build_commit", Dsv3Version()},
                     {"model_filename", opts.Get<std::string>("model-path")},
                     {"model_size", model.checkpoint_bytes()},
                     {"model_n_params", n_params},
                     {"n_threads", r.threads},
                     {"n_prompt", decode ? 0 : r.tokens},
                     {"n_gen", decode ? r.tokens : 0},
                     {"test_time", test_time},
                     {"avg_ns", std::llround(r.seconds.mean * 1e9)},
                     {"stddev_ns", std::llround(r.seconds.stddev * 1e9)},
                     {"avg_ts", r.tps.mean},
                     {"stddev_ts", r.tps.stddev},
                     {"samples_ns", samples_ns},
                     {"samples_ts", r.tps.samples},
                     {"median_ts", r.tps.median},
                     {"min_ts", r.tps.min},
                     {"max_ts", r.tps.max},
                     {"repetitions", reps},
                     {"bytes_per_token", r.bytes_per_token},
                     {"flops_per_token", r.flops_per_token},
                     {"int8_flops_per_token", r.int8_flops_per_token},
                     {"bf16_flops_per_token", r.bf16_flops_per_token},
                     {"bound", r.compute_bound ? "compute" : "memory"},
                     {"read_bandwidth_bytes_per_s", ceilings[i].read},
                     {"peak_flops", ceilings[i].flops},
                     {"peak_int8_ops", ceilings[i].int8},
                     {"peak_bf16_flops", ceilings[i].bf16},
                     {"roofline_ts", r.roofline_tps},
                     {"roofline_fraction", r.roofline_tps > 0 ? r.tps.median / r.roofline_tps : 0.0},
                     {"stage_seconds_per_token", StagesJson(r.stages)},
                     {"peak_rss_bytes", peak_rss},
                     {"weights_mapped_bytes", weight_pages.mapped},
                     {"weights_2mib_page_bytes", weight_pages.huge},
                     {"weights_tensor_bytes", tensor_bytes},
                     {"weights_line_aligned_bytes", aligned},
                     {"kv_cache_bytes", model.kv_cache_bytes()}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return kExitOk;
  }
  std::printf("| model | size | kernels | threads | test | t/s (median) | min | max | roofline t/s | %% roofline |\n");
  std::printf("| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
  std::string name = opts.Get<std::string>("model-path");
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  name = name.substr(name.find_last_of('/') + 1);
  for (const Row& r : rows) {
    std::printf("| %s | %.2f GiB | %s | %lld | %s | %.2f | %.2f | %.2f | %.1f | %.0f%% |\n", name.c_str(),
                model.checkpoint_bytes() / gib, kernel_name.c_str(), static_cast<long long>(r.threads), r.test.c_str(),
                r.tps.median, r.tps.min, r.tps.max, r.roofline_tps,
                r.roofline_tps > 0 ? 100.0 * r.tps.median / r.roofline_tps : 0.0);
  }
  std::printf("\ncpu: %s\n", GetCpuFeatures().ToString().c_str());
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const bool decode = r.test.rfind("tg", 0) == 0;
    std::printf("%s, %lld threads: per token %.3f GB read (%s), %.3f GFLOP", r.test.c_str(),
                static_cast<long long>(r.threads), r.bytes_per_token / 1e9, decode ? "weights+cache" : "weights",
                r.flops_per_token / 1e9);
    if (r.int8_flops_per_token > 0) std::printf(" (%.3f in int8)", r.int8_flops_per_token / 1e9);
    if (r.bf16_flops_per_token > 0) std::printf(" (%.3f in bf16)", r.bf16_flops_per_token / 1e9);
    std::printf("; ceilings %.1f GB/s read, %.1f GFLOP/s FMA peak", ceilings[i].read / 1e9, ceilings[i].flops / 1e9);
    if (ceilings[i].int8 != ceilings[i].flops) std::printf(", %.1f int8 GOP/s", ceilings[i].int8 / 1e9);
    if (ceilings[i].bf16 != ceilings[i].flops) std::printf(", %.1f bf16 GFLOP/s", ceilings[i].bf16 / 1e9);
    std::printf(": %s-bound\n", r.compute_bound ? "compute" : "memory");
  }
  // Where each test's forward time went (the rest of a token's time: sampling, scheduling).
  for (const Row& r : rows) {
    double total = 0;
    for (const auto& [name, field] : kStages) total += r.stages.*field;
    std::printf("%s, %lld threads: forward %.3f ms per token:", r.test.c_str(), static_cast<long long>(r.threads),
                total * 1e3);
    for (const auto& [name, field] : kStages)
      std::printf(" %s %.3f (%.0f%%)", name, r.stages.*field * 1e3, total > 0 ? 100.0 * r.stages.*field / total : 0.0);
    std::printf("\n");
  }
  std::printf("peak RSS %.2f GiB (weights %.2f GiB + KV cache %.2f GiB)\n", peak_rss / gib,
              model.checkpoint_bytes() / gib, model.kv_cache_bytes() / gib);
  std::printf("weights mapped %.2f GiB (the pages read), %.0f%% of them 2 MiB pages%s\n", weight_pages.mapped / gib,
              weight_pages.mapped > 0 ? 100.0 * weight_pages.huge / weight_pages.mapped : 0.0,
              weight_pages.huge < weight_pages.mapped / 2
                  ? " (the page cache holds the checkpoint in small pages: see README, Speed)"
                  : "");
  std::printf("weights on 64-byte lines: %.0f%% of the tensors' bytes%s\n",
              tensor_bytes > 0 ? 100.0 * static_cast<double>(aligned) / static_cast<double>(tensor_bytes) : 0.0,
              aligned < tensor_bytes / 2 ? " (files dsv3 init and quantize write are aligned: see README, Speed)" : "");
  return kExitOk;
}

}  // namespace dsv3::cmd
