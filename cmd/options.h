// Command-line options, declared once per subcommand with Boost.Program_options. Any option
// may also come from `--config FILE.yaml` (keys are the long option names without "--");
// the command line wins. Unknown flags, unknown YAML keys and bad values are usage errors.
#pragma once

#include <boost/program_options.hpp>
#include <string>

#include "engine/base/status.h"

namespace dsv3::cmd {

namespace po = boost::program_options;

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitRegression = 3;

// Maps a Status onto the CLI's exit codes: input errors 2, runtime errors 1.
int ExitCodeFor(const Status& s);
// Prints "dsv3 CMD: error: MESSAGE" on stderr and returns the exit code.
int ReportError(const std::string& command, const Status& s);

class OptionParser {
 public:
  OptionParser(std::string command, std::string summary);

  po::options_description_easy_init Add() { return desc_.add_options(); }
  // --model-path --device --batch-size --max-seq-len --threads --seed, shared by every
  // model-running command.
  void AddModelOptions(bool model_path_required = true);

  // Parses argv (argv[0] is the subcommand) and then --config. Returns a usage error on
  // unknown or malformed options. When --help was given, help() is true and the usage was
  // printed.
  Status Parse(int argc, char** argv);
  bool help() const { return help_; }
  // For `dsv3 init`, whose --config names a model preset rather than an options file.
  void TreatConfigAsPlainValue() { config_is_options_file_ = false; }

  bool Has(const char* name) const { return vm_.count(name) && !vm_[name].defaulted(); }
  template <typename T>
  T Get(const char* name) const {
    return vm_[name].as<T>();
  }
  const po::variables_map& vm() const { return vm_; }
  std::string Usage() const;

 private:
  std::string command_, summary_;
  po::options_description desc_;
  po::variables_map vm_;
  bool help_ = false;
  bool model_options_ = false;
  bool config_is_options_file_ = true;
};

// The most --threads a command takes: a pool the OS will not start part way through cannot be
// unwound (its started threads would end the process), so absurd counts stop at parsing.
constexpr int kMaxThreads = 1024;
// Usage error unless 0 <= threads <= kMaxThreads (--threads of every command).
Status CheckThreads(int threads);

// Applies --threads and --device; returns a usage error for a device we cannot use.
Status ApplyCommonModelOptions(const OptionParser& opts);

// --activations (LinearActivations in engine/kernels/ops.h), shared by the model commands and bench.
inline constexpr const char* kActivationsHelp =
    "int8 | int8-all | bf16 | f32: what INT8/INT4 weights multiply (int8: in decode steps, activations "
    "quantized per token in blocks of 32 as llama.cpp does, float32 in prefill and scoring; "
    "int8-all: int8 in every step, as llama.cpp, INT8/INT4 prefill 2-3x faster with AVX-512 VNNI; bf16: int8-all, and BF16 and FP8 "
    "weights multiply activations rounded to bf16 with AVX-512 BF16, faster prefill (needs that CPU), "
    "and decode's attention over a bf16 KV cache takes bf16 queries and probabilities; "
    "f32: exact float32)";
Status ApplyActivationsOption(const std::string& value);

// --kv-cache-dtype (ModelOptions::KvCache in engine/api.h), shared by the model commands and bench
// (model_options.h's ParseKvCacheDtype).
inline constexpr const char* kKvCacheDtypeHelp =
    "f32 | bf16: what the latent KV cache holds (bf16: half the memory, each cached value rounded to "
    "bf16, as llama.cpp's -ctk/-ctv bf16; attention widens the rows back to float32 exactly as it reads "
    "them, and decode at depth reads half the bytes)";

}  // namespace dsv3::cmd
