// Tokenizer throughput on >= 10 MB of mixed English / Chinese / code text built from the
// shared data (MMLU CSVs, Alpaca en/zh instructions, the V3 encode cases, which include
// HumanEval code), repeated to size. Reported as bytes_per_second by Google Benchmark.
//
//   DSV3_SHARED_DIR=/path/to/shared build/bench/dsv3_microbench --benchmark_filter=Tokenizer
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/file.h"
#include "engine/io/tokenizer.h"

namespace dsv3 {
namespace {

constexpr size_t kCorpusBytes = 10u << 20;

std::string SharedDir() {
  const char* env = std::getenv("DSV3_SHARED_DIR");
  return env ? env : "../shared";
}

// Appends every string value of each JSONL record (instruction, input, output, text).
void AppendJsonlStrings(const std::string& path, std::string* out) {
  auto text = ReadFile(path);
  if (!text.ok()) return;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json record = nlohmann::json::parse(line);
    for (const auto& v : record)
      if (v.is_string()) *out += v.get<std::string>() + "\n";
  }
}

const std::string& Corpus() {
  static const std::string corpus = [] {
    const std::string shared = SharedDir() + "/datasets/";
    std::string unique;
    AppendJsonlStrings(shared + "tokenizer/deepseek-v3/encode_cases.jsonl", &unique);
    AppendJsonlStrings(shared + "instruct/alpaca_en_demo.train.jsonl", &unique);
    AppendJsonlStrings(shared + "instruct/alpaca_zh_demo.train.jsonl", &unique);
    std::error_code ec;
    for (const char* split : {"dev", "test"})
      for (const auto& f : std::filesystem::directory_iterator(shared + "mmlu/" + split, ec))
        if (auto csv = ReadFile(f.path().string()); csv.ok()) unique += *csv;
    std::string all;
    while (!unique.empty() && all.size() < kCorpusBytes) all += unique;
    return all;
  }();
  return corpus;
}

const Tokenizer* LoadTokenizer(bool cache) {
  static auto cached = Tokenizer::Load(SharedDir() + "/datasets/tokenizer/deepseek-v3");
  static auto plain = Tokenizer::Load(SharedDir() + "/datasets/tokenizer/deepseek-v3", {.word_cache = false});
  auto& t = cache ? cached : plain;
  return t.ok() ? &t.value() : nullptr;
}

// One Encode call over the whole corpus; arg 1 = BPE word cache on.
void BM_TokenizerEncode(benchmark::State& state) {
  const Tokenizer* tok = LoadTokenizer(state.range(0) != 0);
  if (!tok || Corpus().empty()) return state.SkipWithError("shared tokenizer or data missing (set DSV3_SHARED_DIR)");
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok->Encode(Corpus());
    if (!ids.ok()) return state.SkipWithError(ids.status().message().c_str());
    tokens = ids->size();
    benchmark::DoNotOptimize(ids->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Corpus().size()));
  state.counters["MB"] = Corpus().size() / 1e6;
  state.counters["tokens"] = static_cast<double>(tokens);
}
BENCHMARK(BM_TokenizerEncode)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->Iterations(3);

// Many short Encode calls (one per line), as the CLI and eval harness make them.
void BM_TokenizerEncodeLines(benchmark::State& state) {
  const Tokenizer* tok = LoadTokenizer(true);
  if (!tok || Corpus().empty()) return state.SkipWithError("shared tokenizer or data missing (set DSV3_SHARED_DIR)");
  std::vector<std::string_view> lines;
  const std::string& c = Corpus();
  for (size_t pos = 0, end; pos < c.size(); pos = end + 1) {
    end = c.find('\n', pos);
    if (end == std::string::npos) end = c.size();
    lines.emplace_back(c.data() + pos, end - pos);
  }
  for (auto _ : state)
    for (std::string_view line : lines) benchmark::DoNotOptimize(tok->Encode(line).ok());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * c.size()));
}
BENCHMARK(BM_TokenizerEncodeLines)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_TokenizerDecode(benchmark::State& state) {
  const Tokenizer* tok = LoadTokenizer(true);
  if (!tok || Corpus().empty()) return state.SkipWithError("shared tokenizer or data missing (set DSV3_SHARED_DIR)");
  auto ids = tok->Encode(Corpus());
  if (!ids.ok()) return state.SkipWithError(ids.status().message().c_str());
  for (auto _ : state) benchmark::DoNotOptimize(tok->Decode(*ids).ok());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Corpus().size()));
}
BENCHMARK(BM_TokenizerDecode)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_TokenizerLoad(benchmark::State& state) {
  for (auto _ : state) {
    auto tok = Tokenizer::Load(SharedDir() + "/datasets/tokenizer/deepseek-v3");
    if (!tok.ok()) return state.SkipWithError(tok.status().message().c_str());
  }
}
BENCHMARK(BM_TokenizerLoad)->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace
}  // namespace dsv3
