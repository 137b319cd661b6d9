// Shared by the model-running subcommands: ModelOptions from the common flags, and parsing
// of --ids lists.
#pragma once

#include <string>
#include <vector>

#include "cmd/options.h"
#include "engine/api.h"

namespace dsv3::cmd {

// ModelOptions from the common flags (checked by ApplyCommonModelOptions).
ModelOptions ModelOptionsFrom(const OptionParser& opts);
// --kv-cache-dtype's value as ModelOptions::KvCache; a usage error names a bad one.
StatusOr<ModelOptions::KvCache> ParseKvCacheDtype(const std::string& value);
// "1 2 3" or "1,2,3" → ids; a usage error names the bad item.
StatusOr<std::vector<int32_t>> ParseIds(const std::string& text);
// Loads the model named by --model-path after applying --threads/--device.
StatusOr<std::unique_ptr<Model>> LoadModelFrom(const OptionParser& opts);

}  // namespace dsv3::cmd
