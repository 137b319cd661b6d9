// Corrupted checkpoints and configs: each must give a one-line error naming the file and
// what was wrong, exit code 2, and no crash — through the real CLI, on a checkpoint made by
// `dsv3 init` and then damaged in one specific way.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

using nlohmann::json;
using testing::RunDsv3;
using testing::TempDir;

struct RawFile {
  std::string header;  // JSON text
  std::string data;
};

RawFile ReadRaw(const std::string& path) {
  std::string bytes = ReadFile(path).value();
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  return {bytes.substr(8, n), bytes.substr(8 + n)};
}

void WriteRaw(const std::string& path, const RawFile& f, int64_t header_len_override = -1) {
  std::string out(8, '\0');
  uint64_t n = header_len_override >= 0 ? static_cast<uint64_t>(header_len_override) : f.header.size();
  std::memcpy(out.data(), &n, 8);
  out += f.header + f.data;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << out;
}

class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir_.path(),
                      "--dtype", "f32", "--seed", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    weights_ = dir_.Join("model.safetensors");
  }
  // Applies `mutate` to the header JSON, writes it back, and runs `dsv3 logits`.
  testing::RunResult MutateHeader(const std::function<void(json&)>& mutate) {
    RawFile f = ReadRaw(weights_);
    json h = json::parse(f.header);
    mutate(h);
    f.header = h.dump();
    WriteRaw(weights_, f);
    return Logits();
  }
  testing::RunResult Logits() {
    return RunDsv3({"logits", "--model-path", dir_.path(), "--ids", "1 2 3", "--out", dir_.Join("out.safetensors")});
  }
  void ExpectUsageError(const testing::RunResult& r, const std::string& names, const std::string& says) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(names), std::string::npos) << "error should name " << names << ": " << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << "error should say " << says << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(FileExists(dir_.Join("out.safetensors"))) << "no output on error";
  }
  TempDir dir_;
  std::string weights_;
};

TEST_F(CorruptionTest, IntactCheckpointWorks) {
  auto r = Logits();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The tensors whose data start on a 64-byte line of the mapping, as the file's offsets place
// them (a mapping starts on a page): all of them as dsv3 init writes the file, and as a file
// whose header is 8 bytes longer (another writer's padding) has them, none of its whole-line
// tensors; the tensors' bytes either way.
TEST_F(CorruptionTest, CheckpointCountsTheTensorBytesOnCacheLines) {
  const auto from_offsets = [&](uint64_t* total) {
    const RawFile f = ReadRaw(weights_);
    uint64_t aligned = 0;
    *total = 0;
    const json h = json::parse(f.header);
    for (auto it = h.begin(); it != h.end(); ++it) {
      if (it.key() == "__metadata__") continue;
      const json& v = it.value();
      const uint64_t begin = v["data_offsets"][0].get<uint64_t>(), bytes = v["data_offsets"][1].get<uint64_t>() - begin;
      *total += bytes;
      if ((8 + f.header.size() + begin) % 64 == 0) aligned += bytes;
    }
    return aligned;
  };
  uint64_t total = 0;
  uint64_t aligned = from_offsets(&total);
  EXPECT_EQ(aligned, total);
  {
    auto ck = Checkpoint::Open(dir_.path());
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    EXPECT_EQ(ck.value()->TensorBytes(), total);
    EXPECT_EQ(ck.value()->LineAlignedTensorBytes(), aligned);
  }
  RawFile f = ReadRaw(weights_);
  f.header += std::string(8, ' ');
  WriteRaw(weights_, f);
  aligned = from_offsets(&total);
  EXPECT_LT(aligned, total / 2);
  auto ck = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck.value()->TensorBytes(), total);
  EXPECT_EQ(ck.value()->LineAlignedTensorBytes(), aligned);
}

TEST_F(CorruptionTest, TruncatedFile) {
  std::string bytes = ReadFile(weights_).value();
  std::ofstream(weights_, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 1000);
  ExpectUsageError(Logits(), "model.safetensors", "truncated");
}

TEST_F(CorruptionTest, FileShorterThanHeaderLength) {
  std::ofstream(weights_, std::ios::binary | std::ios::trunc) << "abc";
  ExpectUsageError(Logits(), "model.safetensors", "too short");
}

TEST_F(CorruptionTest, HeaderLengthTwoToThe63) {
  RawFile f = ReadRaw(weights_);
  WriteRaw(weights_, f, std::numeric_limits<int64_t>::max());  // 2^63 - 1
  ExpectUsageError(Logits(), "model.safetensors", "header length");
  std::string bytes = ReadFile(weights_).value();
  uint64_t n = 1ull << 63;
  std::memcpy(bytes.data(), &n, 8);
  std::ofstream(weights_, std::ios::binary | std::ios::trunc) << bytes;
  ExpectUsageError(Logits(), "model.safetensors", "exceeds");
}

TEST_F(CorruptionTest, HeaderLengthPastEndOfFile) {
  RawFile f = ReadRaw(weights_);
  WriteRaw(weights_, f, static_cast<int64_t>(f.header.size() + f.data.size() + 1));
  ExpectUsageError(Logits(), "model.safetensors", "past the end");
}

TEST_F(CorruptionTest, HeaderNotJson) {
  RawFile f = ReadRaw(weights_);
  f.header[0] = '[';
  f.header[5] = '}';
  WriteRaw(weights_, f);
  ExpectUsageError(Logits(), "model.safetensors", "not valid JSON");
}

TEST_F(CorruptionTest, OverlappingOffsets) {
  auto r = MutateHeader([](json& h) {
    auto& a = h["model.norm.weight"]["data_offsets"];
    a[0] = a[0].get<uint64_t>() - 4;
    a[1] = a[1].get<uint64_t>() - 4;
  });
  ExpectUsageError(r, "model.safetensors", "overlaps");
}

TEST_F(CorruptionTest, WrongByteCount) {
  auto r = MutateHeader([](json& h) { h["model.norm.weight"]["shape"] = {65}; });
  ExpectUsageError(r, "model.norm.weight", "bytes");
}

TEST_F(CorruptionTest, UnknownDtype) {
  auto r = MutateHeader([](json& h) { h["model.norm.weight"]["dtype"] = "F12"; });
  ExpectUsageError(r, "model.norm.weight", "unknown dtype 'F12'");
}

TEST_F(CorruptionTest, NegativeDimension) {
  auto r = MutateHeader([](json& h) { h["model.norm.weight"]["shape"] = {-64}; });
  ExpectUsageError(r, "model.norm.weight", "negative");
}

TEST_F(CorruptionTest, DuplicateTensorName) {
  RawFile f = ReadRaw(weights_);
  json h = json::parse(f.header);
  std::string entry = h["model.norm.weight"].dump();
  f.header = "{\"model.norm.weight\":" + entry + "," + f.header.substr(1);
  WriteRaw(weights_, f);
  ExpectUsageError(Logits(), "model.safetensors", "appears twice");
}

TEST_F(CorruptionTest, MissingTensor) {
  // Renaming keeps the bytes tiled, so only the model's check can notice.
  auto r = MutateHeader([](json& h) {
    h["model.layers.1.mlp.gate.weightX"] = h["model.layers.1.mlp.gate.weight"];
    h.erase("model.layers.1.mlp.gate.weight");
  });
  ExpectUsageError(r, "model.layers.1.mlp.gate.weight", "missing tensor");
}

TEST_F(CorruptionTest, WrongShape) {
  auto r = MutateHeader([](json& h) { h["model.layers.1.mlp.gate.weight"]["shape"] = {64, 16}; });
  ExpectUsageError(r, "model.layers.1.mlp.gate.weight", "config expects [16,64]");
}

TEST_F(CorruptionTest, UnknownScoringFunction) {
  json c = json::parse(ReadFile(dir_.Join("config.json")).value());
  c["scoring_func"] = "relu";
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("config.json"), c.dump()).ok());
  ExpectUsageError(Logits(), "config.json", "scoring_func");
}

TEST_F(CorruptionTest, UnknownTopkMethodAndRopeType) {
  json c = json::parse(ReadFile(dir_.Join("config.json")).value());
  c["rope_scaling"]["type"] = "dynamic";
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("config.json"), c.dump()).ok());
  ExpectUsageError(Logits(), "config.json", "unknown rope type");
  c["rope_scaling"]["type"] = "yarn";
  c["topk_method"] = "sinkhorn";
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("config.json"), c.dump()).ok());
  ExpectUsageError(Logits(), "config.json", "topk_method");
}

TEST_F(CorruptionTest, ConfigNotJsonOrInconsistent) {
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("config.json"), "{\"model_type\": ").ok());
  ExpectUsageError(Logits(), "config.json", "not valid JSON");
  auto r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir_.path()});
  ASSERT_EQ(r.exit_code, 0);
  json c = json::parse(ReadFile(dir_.Join("config.json")).value());
  c["n_group"] = 3;  // does not divide 16 experts
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("config.json"), c.dump()).ok());
  ExpectUsageError(Logits(), "config.json", "n_group");
}

TEST_F(CorruptionTest, ShardIndexNamesMissingTensor) {
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", {{"model.norm.weight", "model.safetensors"},
                                                                   {"ghost.weight", "model.safetensors"}}}};
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("model.safetensors.index.json"), index.dump()).ok());
  ExpectUsageError(Logits(), "model.safetensors.index.json", "ghost.weight");
}

TEST_F(CorruptionTest, TokenIdOutsideVocabulary) {
  auto r = RunDsv3({"logits", "--model-path", dir_.path(), "--ids", "1 2 512", "--out", dir_.Join("out.safetensors")});
  ExpectUsageError(r, "512", "outside the vocabulary");
}

TEST(SafetensorsHeader, HoleInDataIsRejected) {
  std::vector<SafetensorsEntry> entries;
  Status st = ParseSafetensorsHeader(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, &entries, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("hole"), std::string::npos) << st.message();
}

TEST(SafetensorsHeader, HugeShapeDoesNotOverflow) {
  std::vector<SafetensorsEntry> entries;
  Status st = ParseSafetensorsHeader(
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4, &entries, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("too large"), std::string::npos) << st.message();
}

TEST(SafetensorsWriter, RoundTripAndNoTempLeftOnFailure) {
  TempDir dir;
  SafetensorsWriter w;
  float a[6] = {1, 2, 3, 4, 5, 6};
  w.AddBytes("a", DType::kF32, Shape{2, 3}, a);
  w.SetMetadata("format", "pt");
  ASSERT_TRUE(w.Write(dir.Join("x.safetensors")).ok());
  auto f = SafetensorsFile::Open(dir.Join("x.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f.value()->View(*f.value()->Find("a")).f32()[5], 6.0f);
  EXPECT_EQ(f.value()->metadata().at("format"), "pt");

  SafetensorsWriter bad;  // a producer that fails midway must leave nothing behind
  bad.Add("b", DType::kF32, Shape{4}, [](const SafetensorsWriter::Sink& sink) {
    float v = 0;
    (void)sink(&v, 4);
    return Status::Runtime("interrupted");
  });
  EXPECT_FALSE(bad.Write(dir.Join("y.safetensors")).ok());
  EXPECT_FALSE(FileExists(dir.Join("y.safetensors")));
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) entries += (e.path().filename() != "x.safetensors");
  EXPECT_EQ(entries, 0) << "temp file left behind";
}

// The data start 64 bytes into a line from the file's start, and the tensors whose sizes are
// multiples of 64 bytes come first, so each of them starts on a cache line of the mapping
// (the kernels' row loads would straddle two lines otherwise); the others follow, in the
// order added, with no gaps, and every tensor reads back intact.
TEST(SafetensorsWriter, TensorsWhoseSizesAreWholeLinesStartOnCacheLines) {
  TempDir dir;
  SafetensorsWriter w;
  std::vector<float> odd = {1, 2, 3}, line(16), lines(64), not_lines(40);  // 12, 64, 256 and 160 bytes
  std::vector<uint16_t> halves(96);                                          // 192 bytes
  std::vector<uint8_t> tail = {7, 8, 9, 10, 11};
  for (size_t i = 0; i < line.size(); ++i) line[i] = 0.5f * static_cast<float>(i);
  for (size_t i = 0; i < lines.size(); ++i) lines[i] = -1.0f * static_cast<float>(i);
  for (size_t i = 0; i < not_lines.size(); ++i) not_lines[i] = 0.25f * static_cast<float>(i);
  for (size_t i = 0; i < halves.size(); ++i) halves[i] = static_cast<uint16_t>(1000 + i);
  w.AddBytes("odd", DType::kF32, Shape{3}, odd.data());
  w.AddBytes("line", DType::kF32, Shape{16}, line.data());
  w.AddBytes("lines", DType::kF32, Shape{4, 16}, lines.data());
  w.AddBytes("not_lines", DType::kF32, Shape{4, 10}, not_lines.data());
  w.AddBytes("tail", DType::kU8, Shape{5}, tail.data());
  w.AddBytes("halves", DType::kBF16, Shape{96}, halves.data());
  w.SetMetadata("format", "pt");
  ASSERT_TRUE(w.Write(dir.Join("x.safetensors")).ok());

  const RawFile raw = ReadRaw(dir.Join("x.safetensors"));
  EXPECT_EQ((8 + raw.header.size()) % 64, 0u) << "the data do not start on a line";
  const json h = json::parse(raw.header);
  const auto begin = [&](const char* name) { return h[name]["data_offsets"][0].get<uint64_t>(); };
  EXPECT_EQ(begin("line"), 0u);  // whole lines first, in the order added
  EXPECT_EQ(begin("lines"), 64u);
  EXPECT_EQ(begin("halves"), 320u);
  EXPECT_EQ(begin("odd"), 512u);  // then the rest, in the order added
  EXPECT_EQ(begin("not_lines"), 524u);
  EXPECT_EQ(begin("tail"), 684u);
  EXPECT_EQ(raw.data.size(), 689u);

  auto f = SafetensorsFile::Open(dir.Join("x.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().message();
  for (const char* name : {"line", "lines", "halves"})
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.value()->View(*f.value()->Find(name)).data) % 64, 0u) << name;
  const auto bytes_of = [&](const char* name) {
    const SafetensorsEntry* e = f.value()->Find(name);
    const auto* p = static_cast<const uint8_t*>(f.value()->View(*e).data);
    return std::vector<uint8_t>(p, p + (e->end - e->begin));
  };
  const auto as_bytes = [](const auto& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    return std::vector<uint8_t>(p, p + v.size() * sizeof(v[0]));
  };
  EXPECT_EQ(bytes_of("odd"), as_bytes(odd));
  EXPECT_EQ(bytes_of("line"), as_bytes(line));
  EXPECT_EQ(bytes_of("lines"), as_bytes(lines));
  EXPECT_EQ(bytes_of("not_lines"), as_bytes(not_lines));
  EXPECT_EQ(bytes_of("halves"), as_bytes(halves));
  EXPECT_EQ(bytes_of("tail"), tail);
  EXPECT_EQ(f.value()->metadata().at("format"), "pt");
}

}  // namespace
}  // namespace dsv3
