#include "cmd/options.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <vector>

#include "cmd/model_options.h"
#include "engine/base/file.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"

namespace dsv3::cmd {

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kInvalidInput:
    case StatusCode::kNotFound: return kExitUsage;
    case StatusCode::kRuntime: return kExitRuntime;
  }
  return kExitRuntime;
}

int ReportError(const std::string& command, const Status& s) {
  std::cerr << "dsv3 " << command << ": error: " << s.message() << "\n";
  return ExitCodeFor(s);
}

OptionParser::OptionParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)), desc_("Options") {
  desc_.add_options()("help,h", "show this help")(
      "config", po::value<std::string>(), "YAML file whose keys are option names (the command line wins)");
}

void OptionParser::AddModelOptions(bool model_path_required) {
  model_options_ = true;
  auto mp = po::value<std::string>();
  if (model_path_required) mp->required();
  desc_.add_options()("model-path", mp, "checkpoint directory (config.json + safetensors)")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu | cuda:0 | cuda:0-7")(
      "batch-size", po::value<int>()->default_value(1), "sequences processed together")(
      "max-seq-len", po::value<int>()->default_value(4096), "longest sequence (sizes the KV cache)")(
      "threads", po::value<int>()->default_value(0), "CPU threads (0: all cores)")(
      "activations", po::value<std::string>()->default_value("int8"), kActivationsHelp)(
      "kv-cache-dtype", po::value<std::string>()->default_value("f32"), kKvCacheDtypeHelp)(
      "seed", po::value<uint64_t>()->default_value(0), "random seed");
}

Status ApplyActivationsOption(const std::string& value) {
  if (value == "int8") {
    SetLinearActivations(LinearActivations::kInt8);
  } else if (value == "int8-all") {
    SetLinearActivations(LinearActivations::kInt8All);
  } else if (value == "f32") {
    SetLinearActivations(LinearActivations::kF32);
  } else if (value == "bf16") {
    // Elsewhere only the scalar twin could run it: exact, and far too slow to be useful.
    if (!GetCpuFeatures().HasAvx512Bf16Set())
      return Status::Invalid("--activations bf16 needs a CPU with AVX-512 BF16 (and VNNI); this one has: " +
                             GetCpuFeatures().ToString());
    SetLinearActivations(LinearActivations::kBf16);
  } else {
    return Status::Invalid("--activations must be int8, int8-all, bf16 or f32, got \"" + value + "\"");
  }
  return Status::Ok();
}

std::string OptionParser::Usage() const {
  std::ostringstream os;
  os << "usage: dsv3 " << command_ << " [options]\n" << summary_ << "\n\n" << desc_;
  return os.str();
}

namespace {
// Boost reads "-1" as an unsigned option's 2^64 - 1 (lexical_cast wraps it). llama.cpp users
// pass --seed -1 for a random seed, which here would be a fixed one they did not choose.
Status CheckUnsignedValues(const po::parsed_options& parsed, const po::options_description& desc) {
  for (const po::option& o : parsed.options) {
    const po::option_description* d = desc.find_nothrow(o.string_key, false);
    if (d == nullptr || dynamic_cast<const po::typed_value<uint64_t>*>(d->semantic().get()) == nullptr) continue;
    for (const std::string& v : o.value)
      if (v.find('-') != std::string::npos)
        return Status::Invalid("--" + o.string_key + " must be an integer >= 0, got \"" + v + "\"" +
                               (o.string_key == "seed" ? " (there is no random seed: pass one, e.g. --seed $RANDOM)"
                                                       : ""));
  }
  return Status::Ok();
}

std::string ScalarOrJoined(const YAML::Node& n) {
  if (n.IsSequence()) {
    std::string s;
    for (size_t i = 0; i < n.size(); ++i) s += (i ? "," : "") + n[i].as<std::string>();
    return s;
  }
  return n.as<std::string>();
}
}  // namespace

Status OptionParser::Parse(int argc, char** argv) {
  try {
    po::parsed_options parsed = po::command_line_parser(argc, argv).options(desc_).run();  // skips argv[0]
    // No command takes positional arguments: a stray word is most often the rest of an
    // unquoted list (--ids 0 5 7), which would otherwise run with its first item alone.
    for (const po::option& o : parsed.options)
      if (o.position_key >= 0 && !o.value.empty())
        return Status::Invalid("unexpected argument \"" + o.value.front() +
                               "\" (a list goes in one quoted argument, as --ids \"0 5 7\"; see dsv3 " + command_ +
                               " --help)");
    RETURN_IF_ERROR(CheckUnsignedValues(parsed, desc_));
    po::store(parsed, vm_);
    if (vm_.count("help")) {
      help_ = true;
      std::cout << Usage();
      return Status::Ok();
    }
    if (vm_.count("config") && config_is_options_file_) {
      const std::string path = vm_["config"].as<std::string>();
      if (IsDirectory(path)) return Status::Invalid(path + ": a directory, not an options file");
      YAML::Node root;
      try {
        root = YAML::LoadFile(path);
      } catch (const YAML::BadFile&) {
        return Status::NotFound(path + ": no such file");
      } catch (const YAML::Exception& e) {
        return Status::Invalid(path + ": not valid YAML: " + e.what());
      }
      if (!root.IsMap()) return Status::Invalid(path + ": options file must be a YAML mapping");
      std::vector<std::string> args;
      for (const auto& kv : root) {
        if (!kv.first.IsScalar()) return Status::Invalid(path + ": option names must be plain words");
        std::string key = kv.first.as<std::string>();
        if (key == "config") return Status::Invalid(path + ": \"config\" cannot be nested");
        if (!desc_.find_nothrow(key, false))
          return Status::Invalid(path + ": unknown option \"" + key + "\" for dsv3 " + command_);
        const YAML::Node& v = kv.second;
        bool flat = v.IsScalar() || v.IsSequence();
        for (size_t i = 0; flat && v.IsSequence() && i < v.size(); ++i) flat = v[i].IsScalar();
        if (!flat) return Status::Invalid(path + ": option \"" + key + "\" must be a scalar or a list of scalars");
        const bool switch_option = desc_.find(key, false).semantic()->max_tokens() == 0;
        if (switch_option && v.IsScalar() && (v.as<std::string>() == "true" || v.as<std::string>() == "false")) {
          if (v.as<std::string>() == "true") args.push_back("--" + key);  // false: as if absent
        } else {
          args.push_back("--" + key + "=" + ScalarOrJoined(v));
        }
      }
      try {
        const po::parsed_options from_file = po::command_line_parser(args).options(desc_).run();
        RETURN_IF_ERROR(CheckUnsignedValues(from_file, desc_).WithPrefix(path + ": "));
        po::store(from_file, vm_);  // first store wins
      } catch (const po::error& e) {
        return Status::Invalid(path + ": " + e.what() + " (see dsv3 " + command_ + " --help)");
      }
    }
    po::notify(vm_);
  } catch (const po::error& e) {
    return Status::Invalid(std::string(e.what()) + " (see dsv3 " + command_ + " --help)");
  }
  return Status::Ok();
}

Status CheckThreads(int threads) {
  if (threads < 0) return Status::Invalid("--threads must be >= 0");
  if (threads > kMaxThreads) return Status::Invalid("--threads must be at most " + std::to_string(kMaxThreads));
  return Status::Ok();
}

Status ApplyCommonModelOptions(const OptionParser& opts) {
  int threads = opts.Get<int>("threads");
  RETURN_IF_ERROR(CheckThreads(threads));
  if (opts.Get<int>("batch-size") < 1) return Status::Invalid("--batch-size must be >= 1");
  if (opts.Get<int>("max-seq-len") < 1) return Status::Invalid("--max-seq-len must be >= 1");
  SetNumThreads(threads);
  RETURN_IF_ERROR(ApplyActivationsOption(opts.Get<std::string>("activations")));
  RETURN_IF_ERROR(ParseKvCacheDtype(opts.Get<std::string>("kv-cache-dtype")).status());
  const std::string device = opts.Get<std::string>("device");
  int first = 0, last = 0, used = 0;
  const bool cuda = device == "cuda" ||
                    (std::sscanf(device.c_str(), "cuda:%d%n", &first, &used) == 1 && used == static_cast<int>(device.size()) &&
                     first >= 0) ||
                    (std::sscanf(device.c_str(), "cuda:%d-%d%n", &first, &last, &used) == 2 &&
                     used == static_cast<int>(device.size()) && first >= 0 && first <= last);
  if (device != "cpu" && !cuda) return Status::Invalid("--device must be cpu, cuda:N or cuda:A-B, got \"" + device + "\"");
  return Status::Ok();
}

}  // namespace dsv3::cmd
