// dsv3 quantize end to end: every format loads back in the engine and runs with the same
// logits as an F32 checkpoint holding its dequantized weights (the engine dequantizes next
// to the arithmetic, so the two differ only in float32 summation order: 1e-4 for logits of
// magnitude ~10 after reductions of length <= 192); the shared checkpoints survive fp8 and
// back within e4m3's bound; and the safety rules (missing or misshapen scales, output ==
// input, interrupted writes) hold.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/api.h"
#include "engine/base/file.h"
#include "engine/io/checkpoint.h"
#include "engine/kernels/ops.h"
#include "engine/model/tensor_table.h"
#include "engine/quant/fp8.h"
#include "engine/quant/int_quant.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::RunDsv3;

// A tiny V3 checkpoint (vocab 512, hidden 64, MTP layer) from the repo's own preset.
std::string InitTiny(const testing::TempDir& tmp) {
  const std::string dir = tmp.Join("src");
  auto r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir, "--seed", "7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir;
}

// The matrix of `name` in `ck` the way the engine binds it.
WeightMatrix Bind(const ModelConfig& c, const Checkpoint& ck, const TensorSpec& s) {
  WeightMatrix m;
  m.w = ck.View(s.name);
  m.block_out = c.quant_block_out;
  m.block_in = c.QuantBlockIn(s.shape[1]);
  if (m.w.dtype == DType::kF8E4M3) m.scale_inv = ck.View(ScaleInvName(s.name));
  if (m.w.dtype == DType::kI8 || m.w.dtype == DType::kU8) m.scale = ck.View(Int8ScaleName(s.name));
  if (m.w.dtype == DType::kU8) {
    m.in_features = s.shape[1];
    if (!c.quant_symmetric) m.zero = ck.View(Int4ZeroName(s.name));
  }
  return m;
}

// Writes an F32 checkpoint with every tensor of `qdir` dequantized (the twin of STYLE #8).
void WriteDequantizedTwin(const std::string& qdir, const std::string& out) {
  auto c = LoadHfConfig(qdir + "/config.json").value();
  auto ck = Checkpoint::Open(qdir).value();
  SafetensorsWriter w;
  for (const auto& s : BuildTensorTable(c)) {
    if (!ck->Has(s.name)) continue;
    std::vector<float> f(static_cast<size_t>(s.shape.numel()));
    if (s.shape.rank == 2) DequantizeRows(Bind(c, *ck, s), 0, s.shape[0], f.data());
    else f = ToF32Vector(ck->View(s.name));
    w.AddBytes(s.name, DType::kF32, s.shape, f.data());
  }
  ::mkdir(out.c_str(), 0755);
  ASSERT_TRUE(w.Write(out + "/model.safetensors").ok());
  auto j = json::parse(ReadFile(qdir + "/config.json").value());
  j.erase("quantization_config");
  ASSERT_TRUE(WriteFileAtomic(out + "/config.json", j.dump()).ok());
}

// Logits of 24 tokens: all in one prefill step (decode_from 0), or those of the last 20, each
// from a step of its own (Logits also returns the prefill's last row, dropped here).
std::vector<float> LogitsOf(Model& m, int64_t decode_from) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 24; ++i) ids.push_back((i * 37 + 11) % 512);
  std::vector<float> logits;
  EXPECT_TRUE(m.Logits(ids, decode_from, &logits).ok());
  if (decode_from > 0) logits.erase(logits.begin(), logits.begin() + 512);
  return logits;
}

std::vector<float> LogitsOf(const std::string& dir) {
  ModelOptions o;
  o.max_seq_len = 64;
  auto m = Model::Load(dir, o);
  EXPECT_TRUE(m.ok()) << m.status().message();
  if (!m.ok()) return {};
  return LogitsOf(*m.value(), 0);
}

// INT8/INT4 weights take int8 activations in decode steps only (LinearActivations): prefill
// is bit-identical to float32 activations, decode moves by about the quantization step and
// keeps the float path's choices.
TEST(Int8Activations, DecodeStepsUseThemPrefillStaysFloat) {
  for (const std::vector<std::string>& fmt :
       {std::vector<std::string>{"--format", "int8", "--quantize-lm-head"},
        std::vector<std::string>{"--format", "int4", "--group-size", "32", "--quantize-lm-head"}}) {
    testing::TempDir tmp;
    const std::string src = InitTiny(tmp), out = tmp.Join("q");
    std::vector<std::string> args = {"quantize", "--model-path", src, "--out", out};
    args.insert(args.end(), fmt.begin(), fmt.end());
    ASSERT_EQ(RunDsv3(args).exit_code, 0);
    ModelOptions o;
    o.max_seq_len = 64;
    auto m = Model::Load(out, o);
    ASSERT_TRUE(m.ok()) << m.status().message();
    SetLinearActivations(LinearActivations::kF32);
    const auto prefill_f32 = LogitsOf(*m.value(), 0), decode_f32 = LogitsOf(*m.value(), 4);
    SetLinearActivations(LinearActivations::kInt8);
    const auto prefill_i8 = LogitsOf(*m.value(), 0), decode_i8 = LogitsOf(*m.value(), 4);
    ASSERT_EQ(prefill_i8.size(), 24u * 512);
    ASSERT_EQ(decode_i8.size(), 20u * 512);
    EXPECT_EQ(prefill_i8, prefill_f32) << fmt[1] << ": prefill must keep float32 activations";
    EXPECT_NE(decode_i8, decode_f32) << fmt[1] << ": decode steps did not use int8 activations";
    // Each activation moves by at most 1/254 of its block's largest. On this random tiny model
    // that is a few percent of the logits' range at a typical position; at a few positions a
    // router pick flips (sigmoid scores within the perturbation of each other) and the logits
    // move further, so the typical position and the top-1 choices are what is checked.
    std::vector<double> worst(20);
    double scale = 0;
    int same_top1 = 0;
    for (int64_t t = 0; t < 20; ++t) {
      const float* a = decode_i8.data() + t * 512;
      const float* b = decode_f32.data() + t * 512;
      int64_t ia = 0, ib = 0;
      for (int64_t v = 0; v < 512; ++v) {
        worst[t] = std::max(worst[t], double(std::fabs(a[v] - b[v])));
        scale = std::max(scale, double(std::fabs(b[v])));
        if (a[v] > a[ia]) ia = v;
        if (b[v] > b[ib]) ib = v;
      }
      same_top1 += ia == ib;
    }
    std::nth_element(worst.begin(), worst.begin() + 10, worst.end());
    EXPECT_LT(worst[10], 0.05 * scale) << fmt[1] << ": median position";
    EXPECT_GE(same_top1, 17) << fmt[1];
  }
}

struct FormatCase {
  std::vector<std::string> args;
  std::string summary;
  DType weight_dtype;
  bool head_quantized = false;  // --quantize-lm-head: lm_head and the MTP head too
};

class QuantizeFormats : public ::testing::TestWithParam<FormatCase> {};

TEST_P(QuantizeFormats, LoadsAndMatchesItsDequantizedTwin) {
  testing::TempDir tmp;
  const std::string src = InitTiny(tmp), out = tmp.Join("q");
  std::vector<std::string> args = {"quantize", "--model-path", src, "--out", out};
  args.insert(args.end(), GetParam().args.begin(), GetParam().args.end());
  auto r = RunDsv3(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rep = json::parse(r.out);
  EXPECT_EQ(rep["quantization"], GetParam().summary);
  // The check after writing read every element back: rounding to a grid lands some element
  // near half a step (its bound), and the error is neither zero nor large.
  EXPECT_LE(rep["verify"]["worst_error_over_bound"].get<double>(), 1.0);
  EXPECT_GT(rep["verify"]["worst_error_over_bound"].get<double>(), 0.5);
  EXPECT_GT(rep["verify"]["relative_rms_error"].get<double>(), 0.0);
  EXPECT_LT(rep["verify"]["relative_rms_error"].get<double>(), 0.2);
  EXPECT_LT(rep["bytes"]["output"].get<double>(), rep["bytes"]["input"].get<double>());

  auto c = LoadHfConfig(out + "/config.json").value();
  auto ck = Checkpoint::Open(out).value();
  // Projections are quantized (and the heads when asked), everything the release keeps high
  // precision is untouched.
  int64_t heads = 0;
  for (const auto& s : BuildTensorTable(c)) {
    if (!ck->Has(s.name)) continue;
    const bool quantized =
        s.role == TensorRole::kProjection || (s.role == TensorRole::kLmHead && GetParam().head_quantized);
    if (s.role == TensorRole::kLmHead) ++heads;
    const DType want = quantized ? GetParam().weight_dtype : DType::kBF16;
    EXPECT_EQ(ck->View(s.name).dtype, s.role == TensorRole::kRouterBias ? DType::kF32 : want) << s.name;
  }
  EXPECT_EQ(heads, 2) << "tiny-v3 has lm_head and the MTP shared_head";
  WriteDequantizedTwin(out, tmp.Join("twin"));
  const auto a = LogitsOf(out), b = LogitsOf(tmp.Join("twin"));
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(testing::AllClose(a.data(), b.data(), a.size(), 1e-4, "quantized vs dequantized twin"));

  auto info = RunDsv3({"info", "--model-path", out, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(json::parse(info.out)["quantization"], GetParam().summary);
}

INSTANTIATE_TEST_SUITE_P(
    All, QuantizeFormats,
    ::testing::Values(FormatCase{{"--format", "fp8"}, "fp8 e4m3, 128x128 blocks", DType::kF8E4M3},
                      FormatCase{{"--format", "fp8", "--block-size", "32"}, "fp8 e4m3, 32x32 blocks", DType::kF8E4M3},
                      FormatCase{{"--format", "int8"}, "int8 symmetric, per output channel", DType::kI8},
                      FormatCase{{"--format", "int8", "--block-size", "32"}, "int8 symmetric, 32x32 blocks", DType::kI8},
                      FormatCase{{"--format", "int4", "--group-size", "32"}, "int4 asymmetric, group 32", DType::kU8},
                      FormatCase{{"--format", "int4", "--symmetric"}, "int4 symmetric, group 64", DType::kU8},
                      FormatCase{{"--format", "int4", "--group-size", "0"}, "int4 asymmetric, per output channel",
                                 DType::kU8},
                      FormatCase{{"--format", "fp8", "--quantize-lm-head"}, "fp8 e4m3, 128x128 blocks", DType::kF8E4M3,
                                 true},
                      FormatCase{{"--format", "int8", "--quantize-lm-head"}, "int8 symmetric, per output channel",
                                 DType::kI8, true},
                      FormatCase{{"--format", "int4", "--group-size", "32", "--quantize-lm-head"},
                                 "int4 asymmetric, group 32", DType::kU8, true}));

TEST(Quantize, Fp8MatchesTheReleaseLayoutAndIndexRecordsSha256) {
  testing::TempDir tmp;
  const std::string src = InitTiny(tmp), out = tmp.Join("fp8");
  auto r = RunDsv3({"quantize", "--model-path", src, "--out", out, "--format", "fp8", "--shard-size-mb", "0.2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto cfg = json::parse(ReadFile(out + "/config.json").value());
  EXPECT_EQ(cfg["quantization_config"],
            json::parse(R"({"activation_scheme":"dynamic","fmt":"e4m3","quant_method":"fp8","weight_block_size":[128,128]})"));
  auto index = json::parse(ReadFile(out + "/model.safetensors.index.json").value());
  const auto& sums = index["metadata"]["sha256"];
  ASSERT_GE(sums.size(), 2u) << "0.2 MiB shards must split this checkpoint";
  for (auto it = sums.begin(); it != sums.end(); ++it) {
    FILE* p = ::popen(("sha256sum " + out + "/" + it.key()).c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[65] = {};
    ASSERT_EQ(std::fread(buf, 1, 64, p), 64u);
    ::pclose(p);
    EXPECT_EQ(std::string(buf), it.value().get<std::string>()) << it.key();
  }
  EXPECT_TRUE(FileExists(out + "/SHA256SUMS"));
  // A projection and its scale: F8_E4M3 [out,in] and F32 [ceil(out/128), ceil(in/128)].
  auto ck = Checkpoint::Open(out).value();
  const auto* e = ck->Find("model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
  const auto* s = ck->Find("model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv");
  ASSERT_TRUE(e && s);
  EXPECT_EQ(e->dtype, DType::kF8E4M3);
  EXPECT_EQ(s->dtype, DType::kF32);
  EXPECT_EQ(s->shape, (Shape{(e->shape[0] + 127) / 128, (e->shape[1] + 127) / 128}));
  EXPECT_EQ(ck->View("model.layers.1.mlp.gate.weight").dtype, DType::kBF16);
  EXPECT_EQ(ck->View("model.layers.3.eh_proj.weight").dtype, DType::kBF16);
}

// A checkpoint already in the format asked for (an FP8 release rewritten as FP8; INT4 g32 as
// INT4 g32) has its projections copied byte for byte, not quantized again, and comes out with
// its tensors on 64-byte lines; other blocks (INT4 g32 as g64) are quantized as before. One
// FP8 matrix is first made all 1.0 (e4m3 0x38), as a release's block can be whose scale is
// not its largest value's: quantized again it would become all 448.
TEST(Quantize, ProjectionsAlreadyInTheFormatAreCopiedByteForByte) {
  testing::TempDir tmp;
  const std::string src = InitTiny(tmp);
  const auto tensors_of = [](const testing::RunResult& r) { return json::parse(r.out)["tensors"]; };
  const auto same_bytes = [](const std::string& a_dir, const std::string& b_dir) {
    auto a = Checkpoint::Open(a_dir).value();
    auto b = Checkpoint::Open(b_dir).value();
    EXPECT_EQ(a->Names(), b->Names());
    for (const std::string& name : a->Names()) {
      const TensorView x = a->View(name), y = b->View(name);
      ASSERT_EQ(x.nbytes(), y.nbytes()) << name;
      EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes()), 0) << name << " changed";
    }
    EXPECT_GE(b->LineAlignedTensorBytes(), b->TensorBytes() * 9 / 10) << b_dir;
  };
  for (const std::vector<std::string>& format : std::vector<std::vector<std::string>>{
           {"--format", "fp8"}, {"--format", "int4", "--group-size", "32", "--symmetric"}}) {
    const std::string once = tmp.Join("once"), twice = tmp.Join("twice");
    std::vector<std::string> args = {"quantize", "--model-path", src, "--out", once};
    args.insert(args.end(), format.begin(), format.end());
    auto r = RunDsv3(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const int64_t projections = tensors_of(r)["quantized"].get<int64_t>();
    EXPECT_GT(projections, 0);
    if (format[1] == "fp8") {
      const std::string name = "model.layers.1.self_attn.o_proj.weight";
      std::string file;
      uint64_t begin = 0, end = 0;
      {
        auto ck = Checkpoint::Open(once).value();
        const SafetensorsFile* f = nullptr;
        const SafetensorsEntry* e = ck->Find(name, &f);
        ASSERT_TRUE(e != nullptr && e->dtype == DType::kF8E4M3) << name;
        file = f->path();
        begin = e->begin;
        end = e->end;
      }
      std::string raw = ReadFile(file).value();
      uint64_t n = 0;
      std::memcpy(&n, raw.data(), 8);
      std::memset(raw.data() + 8 + n + begin, 0x38, end - begin);
      std::ofstream(file, std::ios::binary | std::ios::trunc) << raw;
    }
    args[2] = once;
    args[4] = twice;
    r = RunDsv3(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(tensors_of(r)["quantized"], 0) << format[1];
    EXPECT_EQ(tensors_of(r)["as_stored"], projections) << format[1];
    same_bytes(once, twice);
    if (format[1] == "int4") {  // another group size is quantized again
      const std::string g64 = tmp.Join("g64");
      r = RunDsv3(
          {"quantize", "--model-path", once, "--out", g64, "--format", "int4", "--group-size", "64", "--symmetric"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(tensors_of(r)["quantized"], projections);
      EXPECT_EQ(tensors_of(r)["as_stored"], 0);
      fs::remove_all(g64);
    }
    fs::remove_all(once);
    fs::remove_all(twice);
  }
}

TEST(Quantize, KeepPatternsStayInSourcePrecision) {
  testing::TempDir tmp;
  const std::string src = InitTiny(tmp), out = tmp.Join("q");
  auto r = RunDsv3({"quantize", "--model-path", src, "--out", out, "--format", "int4", "--keep", "*.kv_b_proj.weight",
                    "--keep", "model.layers.0.*"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ck = Checkpoint::Open(out).value();
  EXPECT_EQ(ck->View("model.layers.1.self_attn.kv_b_proj.weight").dtype, DType::kBF16);
  EXPECT_EQ(ck->View("model.layers.0.mlp.up_proj.weight").dtype, DType::kBF16);
  EXPECT_FALSE(ck->Has("model.layers.0.mlp.up_proj.weight_scale"));
  EXPECT_EQ(ck->View("model.layers.1.self_attn.o_proj.weight").dtype, DType::kU8);
  EXPECT_FALSE(LogitsOf(out).empty());
  // A pattern that matches nothing (a typo, or a glob fnmatch cannot read) is refused before
  // anything is written: it had quantized what it meant to keep.
  for (const std::string pattern : {"*.kv_b_proj", "["}) {
    const std::string none = tmp.Join("none");
    r = RunDsv3({"quantize", "--model-path", src, "--out", none, "--format", "int4", "--keep", pattern});
    EXPECT_EQ(r.exit_code, 2) << pattern;
    EXPECT_NE(r.err.find("--keep '" + pattern + "' matches no tensor"), std::string::npos) << r.err;
    EXPECT_FALSE(FileExists(none));
  }
}

// fp8 and back to bf16 on every shared checkpoint: each weight within e4m3's bound of its
// source (relative 2^-4, plus the subnormal half-step 2^-10 of the block scale), plus the
// final BF16 rounding (relative 2^-8 of the result).
TEST(Quantize, SharedCheckpointsThroughFp8AndBackStayWithinE4m3Bound) {
  DSV3_REQUIRE_SHARED();
  for (const char* name : {"tiny-v3", "tiny-v3-yarn-bf16", "tiny-v2-lite"}) {
    testing::TempDir tmp;
    const std::string src = testing::SharedDir() + "/models/" + name;
    auto r = RunDsv3({"quantize", "--model-path", src, "--out", tmp.Join("fp8"), "--format", "fp8"});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    r = RunDsv3({"quantize", "--model-path", tmp.Join("fp8"), "--out", tmp.Join("bf16"), "--format", "bf16"});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    auto c = LoadHfConfig(src + "/config.json").value();
    auto a = Checkpoint::Open(src).value(), q = Checkpoint::Open(tmp.Join("fp8")).value(),
         b = Checkpoint::Open(tmp.Join("bf16")).value();
    EXPECT_EQ(LoadHfConfig(tmp.Join("bf16") + "/config.json").value().quant_method, QuantMethod::kNone);
    for (const auto& s : BuildTensorTable(c)) {
      if (!a->Has(s.name) || s.role != TensorRole::kProjection) continue;
      ASSERT_EQ(b->View(s.name).dtype, DType::kBF16) << s.name;
      const auto w = ToF32Vector(a->View(s.name)), back = ToF32Vector(b->View(s.name));
      const TensorView si = q->View(ScaleInvName(s.name));
      for (int64_t i = 0; i < s.shape.numel(); ++i) {
        const int64_t r0 = i / s.shape[1], c0 = i % s.shape[1];
        const double sc = si.f32()[(r0 / 128) * si.shape[1] + c0 / 128];
        const double bound = (std::fabs(w[i]) / 16 + sc / 1024) * (1 + 1e-5) + std::fabs(back[i]) / 256;
        ASSERT_LE(std::fabs(back[i] - w[i]), bound) << name << " " << s.name << " [" << i << "]";
      }
    }
  }
}

// Writes `src` (F32 tiny) as an fp8 checkpoint, letting `edit` drop or reshape a scale.
void WriteFp8With(const std::string& src, const std::string& out,
                  const std::function<bool(const std::string&, Shape*)>& edit) {
  auto c = LoadHfConfig(src + "/config.json").value();
  auto ck = Checkpoint::Open(src).value();
  SafetensorsWriter w;
  for (const auto& s : BuildTensorTable(c)) {
    if (!ck->Has(s.name)) continue;
    auto f = ToF32Vector(ck->View(s.name));
    if (s.role != TensorRole::kProjection) {
      w.AddBytes(s.name, DType::kF32, s.shape, f.data());
      continue;
    }
    Fp8Block q = QuantizeFp8Block(f.data(), s.shape[0], s.shape[1], 128, 128).value();
    w.AddBytes(s.name, DType::kF8E4M3, s.shape, q.q.data());
    Shape ss{(s.shape[0] + 127) / 128, (s.shape[1] + 127) / 128};
    if (!edit(ScaleInvName(s.name), &ss)) continue;
    std::vector<float> scale(static_cast<size_t>(ss.numel()), 1.0f);
    w.AddBytes(ScaleInvName(s.name), DType::kF32, ss, scale.data());
  }
  ::mkdir(out.c_str(), 0755);
  ASSERT_TRUE(w.Write(out + "/model.safetensors").ok());
  auto j = json::parse(ReadFile(src + "/config.json").value());
  j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                              {"weight_block_size", {128, 128}}};
  ASSERT_TRUE(WriteFileAtomic(out + "/config.json", j.dump()).ok());
}

TEST(QuantizeSafety, MissingScaleIsRefusedByQuantizeAndLoad) {
  DSV3_REQUIRE_SHARED();
  testing::TempDir tmp;
  const std::string victim = "model.layers.1.mlp.experts.3.down_proj.weight_scale_inv";
  WriteFp8With(testing::SharedDir() + "/models/tiny-v3", tmp.Join("bad"),
               [&](const std::string& n, Shape*) { return n != victim; });
  auto r = RunDsv3({"quantize", "--model-path", tmp.Join("bad"), "--out", tmp.Join("bf16"), "--format", "bf16"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(victim), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.Join("bf16")));
  EXPECT_FALSE(Model::Load(tmp.Join("bad"), ModelOptions{}).ok());
}

TEST(QuantizeSafety, ScaleOfWrongShapeIsRefused) {
  DSV3_REQUIRE_SHARED();
  testing::TempDir tmp;
  const std::string victim = "model.layers.0.self_attn.q_b_proj.weight_scale_inv";
  WriteFp8With(testing::SharedDir() + "/models/tiny-v3", tmp.Join("bad"), [&](const std::string& n, Shape* s) {
    if (n == victim) *s = Shape{(*s)[0] + 1, (*s)[1]};
    return true;
  });
  auto r = RunDsv3({"quantize", "--model-path", tmp.Join("bad"), "--out", tmp.Join("int8"), "--format", "int8"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(victim), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("shape"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp.Join("int8")));
}

TEST(QuantizeSafety, NeverWritesOverItsInputEvenThroughASymlink) {
  testing::TempDir tmp;
  const std::string src = InitTiny(tmp);
  const auto before = ReadFile(src + "/model.safetensors").value();
  ASSERT_EQ(::symlink(src.c_str(), tmp.Join("link").c_str()), 0);
  for (const std::string& out : {src, src + "/", tmp.Join("link"), tmp.Join("src/../src")}) {
    auto r = RunDsv3({"quantize", "--model-path", src, "--out", out, "--format", "int8"});
    EXPECT_EQ(r.exit_code, 2) << out;
    EXPECT_NE(r.err.find("input"), std::string::npos) << r.err;
  }
  // Through a symlinked input, too.
  auto r = RunDsv3({"quantize", "--model-path", tmp.Join("link"), "--out", src, "--format", "int8"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(ReadFile(src + "/model.safetensors").value(), before);
  // A non-empty output directory is refused rather than mixed into.
  ::mkdir(tmp.Join("busy").c_str(), 0755);
  ASSERT_TRUE(WriteFileAtomic(tmp.Join("busy/x"), "x").ok());
  r = RunDsv3({"quantize", "--model-path", src, "--out", tmp.Join("busy"), "--format", "int8"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(QuantizeSafety, InterruptedWriteLeavesNothingUnderTheFinalName) {
  testing::TempDir tmp;
  const std::string src = InitTiny(tmp);
  for (const char* n : {"0", "5", "40"}) {
    auto r = RunDsv3({"quantize", "--model-path", src, "--out", tmp.Join("q"), "--format", "int4",
                      "--shard-size-mb", "0.2", "--fail-after-tensors", n});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("interrupted"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp.Join("q"))) << "after failing at tensor " << n;
    for (const auto& e : fs::directory_iterator(tmp.path()))
      EXPECT_EQ(e.path().filename().string().find(".q.dsv3-partial"), std::string::npos) << "staging left behind";
  }
  // An empty directory given as --out is filled atomically by the one rename.
  ::mkdir(tmp.Join("empty").c_str(), 0755);
  auto r = RunDsv3({"quantize", "--model-path", src, "--out", tmp.Join("empty"), "--format", "fp8"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(FileExists(tmp.Join("empty/model.safetensors.index.json")));
}

TEST(QuantizeConfig, UnknownOrUndecodableQuantizationConfigIsRefused) {
  const std::string base = R"({"model_type":"deepseek_v3","vocab_size":512,"hidden_size":64,"intermediate_size":192,
    "moe_intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":4,"first_k_dense_replace":1,
    "n_routed_experts":0,"num_experts_per_tok":0,"kv_lora_rank":32,"qk_nope_head_dim":16,"qk_rope_head_dim":8,
    "v_head_dim":16,"max_position_embeddings":128,"q_lora_rank":null,"rope_scaling":null,)";
  auto parse = [&](const std::string& q) { return ParseHfConfig(base + R"("quantization_config":)" + q + "}", "c.json"); };
  EXPECT_FALSE(parse(R"({"quant_method":"gptq"})").ok());
  EXPECT_FALSE(parse(R"({"quant_method":"dsv3_int4","bits":4,"symmetric":false,"scale_dtype":"F16",
      "packing":"high nibble first","zero_dtype":"U8","weight_block_size":[1,64]})").ok());
  auto ok = parse(R"({"quant_method":"dsv3_int4","bits":4,"symmetric":false,"scale_dtype":"F16",
      "packing":"U8 [out, ceil(in/2)], low nibble = even column","zero_dtype":"U8","weight_block_size":[1,64]})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok.value().quant_method, QuantMethod::kInt4);
  EXPECT_FALSE(ok.value().quant_symmetric);
  auto i8 = parse(R"({"quant_method":"dsv3_int8","bits":8,"symmetric":true,"scale_dtype":"F32","weight_block_size":[1,-1]})");
  ASSERT_TRUE(i8.ok()) << i8.status().message();
  EXPECT_EQ(i8.value().QuantBlockIn(700), 700);
  EXPECT_EQ(ParseHfConfig(ToHfConfigJson(ok.value()), "x").value().quant_block_in, 64);
}

}  // namespace
}  // namespace dsv3
