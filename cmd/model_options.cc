#include "cmd/model_options.h"

#include <iostream>
#include <sstream>

namespace dsv3::cmd {

ModelOptions ModelOptionsFrom(const OptionParser& opts) {
  ModelOptions o;
  o.max_seq_len = opts.Get<int>("max-seq-len");
  o.batch_size = opts.Get<int>("batch-size");
  const auto kv = ParseKvCacheDtype(opts.Get<std::string>("kv-cache-dtype"));
  if (kv.ok()) o.kv_cache = kv.value();
  return o;
}

StatusOr<ModelOptions::KvCache> ParseKvCacheDtype(const std::string& value) {
  if (value == "f32") return ModelOptions::KvCache::kF32;
  if (value == "bf16") return ModelOptions::KvCache::kBF16;
  return Status::Invalid("--kv-cache-dtype must be f32 or bf16, got \"" + value + "\"");
}

StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::string t = text;
  for (char& ch : t)
    if (ch == ',') ch = ' ';
  std::istringstream is(t);
  std::vector<int32_t> ids;
  std::string item;
  while (is >> item) {
    try {
      size_t pos = 0;
      long long v = std::stoll(item, &pos);
      if (pos != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (...) {
      return Status::Invalid("--ids: \"" + item + "\" is not a token id");
    }
  }
  if (ids.empty()) return Status::Invalid("--ids: no token ids given");
  return ids;
}

StatusOr<std::unique_ptr<Model>> LoadModelFrom(const OptionParser& opts) {
  RETURN_IF_ERROR(ApplyCommonModelOptions(opts));
  const std::string device = opts.Get<std::string>("device");
  if (device != "cpu")
    std::cerr << "dsv3: note: the CUDA forward pass is not built yet; running on the CPU\n";
  auto m = Model::Load(opts.Get<std::string>("model-path"), ModelOptionsFrom(opts));
  if (m.ok() && !m.value()->unused_tensors().empty()) {
    const auto& u = m.value()->unused_tensors();
    std::cerr << "dsv3: warning: " << u.size() << " tensor(s) in the checkpoint are not used by the model, e.g. "
              << u.front() << "\n";
  }
  return m;
}

}  // namespace dsv3::cmd
