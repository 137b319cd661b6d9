#include "engine/io/checkpoint.h"

#include <algorithm>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "engine/base/file.h"

namespace dsv3 {

using json = nlohmann::json;

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ck = std::make_unique<Checkpoint>();
  ck->dir_ = dir;
  const std::string index_path = JoinPath(dir, kIndexFile);
  const std::string single_path = JoinPath(dir, kSingleFile);

  auto add_file = [&](const std::string& path) -> Status {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(path));
    size_t idx = ck->files_.size();
    for (const auto& e : f->entries()) {
      if (ck->where_.count(e.name))
        return Status::Invalid(path + ": tensor " + e.name + " is also in " +
                               ck->files_[ck->where_[e.name].first]->path());
      ck->where_[e.name] = {idx, &e};
    }
    ck->files_.push_back(std::move(f));
    return Status::Ok();
  };

  if (FileExists(index_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
    json index;
    try {
      index = json::parse(text);
    } catch (const json::exception& e) {
      return Status::Invalid(index_path + ": not valid JSON: " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      return Status::Invalid(index_path + ": missing \"weight_map\" object");
    std::map<std::string, std::string> weight_map;
    std::vector<std::string> shard_order;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) return Status::Invalid(index_path + ": weight_map." + it.key() + " is not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        return Status::Invalid(index_path + ": weight_map." + it.key() + " names a path outside the directory: " + shard);
      weight_map[it.key()] = shard;
      if (std::find(shard_order.begin(), shard_order.end(), shard) == shard_order.end()) shard_order.push_back(shard);
    }
    std::sort(shard_order.begin(), shard_order.end());
    for (const auto& shard : shard_order) RETURN_IF_ERROR(add_file(JoinPath(dir, shard)));
    for (const auto& [name, shard] : weight_map) {
      auto it = ck->where_.find(name);
      if (it == ck->where_.end())
        return Status::Invalid(index_path + ": weight_map lists " + name + " in " + shard + ", but that shard has no such tensor");
      const std::string& actual = ck->files_[it->second.first]->path();
      if (actual != JoinPath(dir, shard))
        return Status::Invalid(index_path + ": weight_map puts " + name + " in " + shard + ", but it is in " + actual);
    }
    for (const auto& [name, loc] : ck->where_)
      if (!weight_map.count(name))
        return Status::Invalid(ck->files_[loc.first]->path() + ": tensor " + name + " is not listed in " + kIndexFile);
  } else if (FileExists(single_path)) {
    RETURN_IF_ERROR(add_file(single_path));
  } else {
    return Status::NotFound(dir + ": no " + kSingleFile + " or " + kIndexFile);
  }
  return ck;
}

const SafetensorsEntry* Checkpoint::Find(const std::string& name, const SafetensorsFile** file) const {
  auto it = where_.find(name);
  if (it == where_.end()) return nullptr;
  if (file) *file = files_[it->second.first].get();
  return it->second.second;
}

TensorView Checkpoint::View(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return {};
  return files_[it->second.first]->View(*it->second.second);
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;
}

uint64_t Checkpoint::TotalBytes() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->file_size();
  return n;
}

uint64_t Checkpoint::TensorBytes() const {
  uint64_t n = 0;
  for (const auto& f : files_)
    for (const SafetensorsEntry& e : f->entries()) n += e.end - e.begin;
  return n;
}

uint64_t Checkpoint::LineAlignedTensorBytes() const {
  uint64_t n = 0;
  for (const auto& f : files_)
    for (const SafetensorsEntry& e : f->entries())
      if (reinterpret_cast<uintptr_t>(f->View(e).data) % SafetensorsWriter::kDataAlignment == 0) n += e.end - e.begin;
  return n;
}

}  // namespace dsv3
