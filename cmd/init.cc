// dsv3 init: a random-init checkpoint in the Hugging Face layout from a YAML preset.
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "cmd/commands.h"
#include "cmd/options.h"
#include "engine/base/file.h"
#include "engine/base/threads.h"
#include "engine/io/tokenizer.h"
#include "engine/model/config.h"
#include "engine/model/init.h"
#include "engine/model/tensor_table.h"

namespace dsv3::cmd {

namespace {
// The tokenizer files of `from` (name, text), read before anything is written so that a bad
// --tokenizer leaves no checkpoint behind.
StatusOr<std::vector<std::pair<std::string, std::string>>> ReadTokenizerFiles(const std::string& from) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const std::string src = JoinPath(from, name);
    if (!FileExists(src)) {
      if (std::string(name) == "tokenizer.json") return Status::NotFound(src + ": no such file");
      continue;
    }
    ASSIGN_OR_RETURN(std::string text, ReadFile(src));
    files.emplace_back(name, std::move(text));
  }
  return files;
}
}  // namespace

int RunInit(int argc, char** argv) {
  OptionParser opts("init", "Write a random-init checkpoint (config.json + safetensors) from a model preset.");
  opts.TreatConfigAsPlainValue();  // --config names the model preset (configs/models/*.yaml)
  opts.Add()("out", po::value<std::string>()->required(), "output directory")(
      "seed", po::value<uint64_t>()->default_value(0), "random seed")(
      "dtype", po::value<std::string>()->default_value("bf16"), "f32 | bf16")(
      "init", po::value<std::string>()->default_value("config"),
      "config: N(0, initializer_range); fan-in: the golden checkpoints' trained-like scales")(
      "tokenizer", po::value<std::string>(), "copy tokenizer.json/tokenizer_config.json from this directory")(
      "shard-size-mb", po::value<uint64_t>()->default_value(5000), "largest safetensors shard")(
      "threads", po::value<int>()->default_value(0), "CPU threads (0: all cores)");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("init", st);
  if (opts.help()) return kExitOk;
  const int threads = opts.Get<int>("threads");
  if (Status bad = CheckThreads(threads); !bad.ok()) return ReportError("init", bad);
  SetNumThreads(threads);
  const std::string preset = opts.Has("config") ? opts.Get<std::string>("config") : "";
  if (preset.empty()) return ReportError("init", Status::Invalid("--config PRESET.yaml is required"));
  auto config = LoadYamlPreset(preset, nullptr);
  if (!config.ok()) return ReportError("init", config.status());
  InitOptions io;
  io.seed = opts.Get<uint64_t>("seed");
  const std::string dtype = opts.Get<std::string>("dtype");
  if (dtype == "f32") io.dtype = DType::kF32;
  else if (dtype == "bf16") io.dtype = DType::kBF16;
  else return ReportError("init", Status::Invalid("--dtype must be f32 or bf16, got \"" + dtype + "\""));
  const std::string scheme = opts.Get<std::string>("init");
  if (scheme == "config") io.scheme = InitScheme::kConfig;
  else if (scheme == "fan-in") io.scheme = InitScheme::kFanIn;
  else return ReportError("init", Status::Invalid("--init must be config or fan-in, got \"" + scheme + "\""));
  const uint64_t shard_mb = opts.Get<uint64_t>("shard-size-mb");
  if (shard_mb < 1 || shard_mb > (uint64_t{1} << 30))
    return ReportError("init", Status::Invalid("--shard-size-mb must be between 1 and 2^30"));
  io.max_shard_bytes = shard_mb << 20;
  if (opts.Has("tokenizer")) {
    const std::string from = opts.Get<std::string>("tokenizer");
    auto files = ReadTokenizerFiles(from);
    if (!files.ok()) return ReportError("init", files.status());
    io.tokenizer_files = std::move(files.value());
    // Parsed too: a tokenizer the model cannot load, or one with ids past the preset's
    // vocab_size, would make a checkpoint no command can use with text.
    auto tok = Tokenizer::Load(from);  // its messages name each file by its path
    if (!tok.ok()) return ReportError("init", tok.status());
    st = CheckTokenizerFitsModel(tok.value(), from, config.value().vocab_size, preset);
    if (!st.ok()) return ReportError("init", st);
  }
  const std::string out = opts.Get<std::string>("out");
  st = WriteRandomCheckpoint(config.value(), out, io);
  if (!st.ok()) return ReportError("init", st);
  const ParamCounts pc = CountParams(config.value());
  std::cerr << "wrote " << out << ": " << pc.total + pc.mtp << " parameters (" << dtype << ", seed " << io.seed << ")\n";
  return kExitOk;
}

}  // namespace dsv3::cmd
