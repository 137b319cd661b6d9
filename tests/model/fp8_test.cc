// FP8 block weights: a checkpoint whose projections are F8_E4M3 + weight_scale_inv (the
// DeepSeek-V3 release layout) must give the same logits as the F32 checkpoint holding the
// dequantized values, e4m3(q) * scale_inv — the engine dequantizes blocks next to the
// arithmetic, so the two differ only in float32 summation order (tolerance 1e-5 for
// logits of magnitude ~8 after reductions of length <= 192).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/api.h"
#include "engine/base/file.h"
#include "engine/io/checkpoint.h"
#include "engine/model/tensor_table.h"
#include "engine/quant/fp8.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

// Writes two checkpoints from `src`: fp8_dir (projections quantized) and deq_dir (the same
// projections dequantized back to F32). Everything else is copied as F32.
void MakeFp8Pair(const std::string& src, int64_t block, const std::string& fp8_dir, const std::string& deq_dir) {
  auto cfg = LoadHfConfig(src + "/config.json").value();
  auto ck = Checkpoint::Open(src).value();
  SafetensorsWriter fp8, deq;
  for (const auto& spec : BuildTensorTable(cfg)) {
    if (!ck->Has(spec.name)) continue;
    std::vector<float> w = ToF32Vector(ck->View(spec.name));
    if (spec.role != TensorRole::kProjection) {
      fp8.AddBytes(spec.name, DType::kF32, spec.shape, w.data());
      deq.AddBytes(spec.name, DType::kF32, spec.shape, w.data());
      continue;
    }
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    Fp8Block q = QuantizeFp8Block(w.data(), rows, cols, block, block).value();
    const int64_t sc = (cols + block - 1) / block;
    std::vector<float> back(w.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        back[r * cols + c] = E4M3ToF32(q.q[r * cols + c]) * q.scale_inv[(r / block) * sc + c / block];
    fp8.AddBytes(spec.name, DType::kF8E4M3, spec.shape, q.q.data());
    fp8.AddBytes(ScaleInvName(spec.name), DType::kF32, Shape{(rows + block - 1) / block, sc}, q.scale_inv.data());
    deq.AddBytes(spec.name, DType::kF32, spec.shape, back.data());
  }
  ::mkdir(fp8_dir.c_str(), 0755);
  ::mkdir(deq_dir.c_str(), 0755);
  ASSERT_TRUE(fp8.Write(fp8_dir + "/model.safetensors").ok());
  ASSERT_TRUE(deq.Write(deq_dir + "/model.safetensors").ok());
  auto j = nlohmann::json::parse(ReadFile(src + "/config.json").value());
  j["num_nextn_predict_layers"] = 0;
  ASSERT_TRUE(WriteFileAtomic(deq_dir + "/config.json", j.dump()).ok());
  j["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                              {"weight_block_size", {block, block}}};
  ASSERT_TRUE(WriteFileAtomic(fp8_dir + "/config.json", j.dump()).ok());
}

class Fp8Test : public ::testing::TestWithParam<int64_t> {};

TEST_P(Fp8Test, Fp8LogitsEqualDequantizedF32Logits) {
  DSV3_REQUIRE_SHARED();
  testing::TempDir tmp;
  const int64_t block = GetParam();
  MakeFp8Pair(testing::SharedDir() + "/models/tiny-v3", block, tmp.Join("fp8"), tmp.Join("deq"));
  ModelOptions o;
  o.max_seq_len = 128;
  auto fp8 = Model::Load(tmp.Join("fp8"), o);
  auto deq = Model::Load(tmp.Join("deq"), o);
  ASSERT_TRUE(fp8.ok()) << fp8.status().message();
  ASSERT_TRUE(deq.ok()) << deq.status().message();
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % 512);
  std::vector<float> a, b;
  ASSERT_TRUE(fp8.value()->Logits(ids, 0, &a).ok());
  ASSERT_TRUE(deq.value()->Logits(ids, 0, &b).ok());
  EXPECT_TRUE(testing::AllClose(a.data(), b.data(), a.size(), 1e-5, "fp8 vs dequantized f32"));
}

// 128 is the release's block (every block of these tiny matrices is a partial edge block);
// 32 gives several full blocks plus partial ones (kv_a_proj has 40 rows).
INSTANTIATE_TEST_SUITE_P(Blocks, Fp8Test, ::testing::Values(128, 32));

TEST(Fp8Quant, BlockScaleMapsAmaxTo448AndRoundTripsWithinHalfUlp) {
  std::vector<float> w(40 * 70);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * i) * (1 + (i % 7));
  Fp8Block q = QuantizeFp8Block(w.data(), 40, 70, 32, 32).value();
  ASSERT_EQ(q.scale_inv.size(), 2u * 3u);
  for (int64_t r = 0; r < 40; ++r)
    for (int64_t c = 0; c < 70; ++c) {
      const float s = q.scale_inv[(r / 32) * 3 + c / 32];
      const float back = E4M3ToF32(q.q[r * 70 + c]) * s;
      // e4m3 has 3 mantissa bits: relative error <= 2^-4 for normals, plus the subnormal step.
      EXPECT_LE(std::fabs(back - w[r * 70 + c]), std::fabs(w[r * 70 + c]) / 16 + s * std::ldexp(1.0f, -10));
    }
}

}  // namespace
}  // namespace dsv3

namespace dsv3 {
namespace {

TEST(Fp8Quant, NonFiniteWeightIsAnErrorNamingTheElement) {
  std::vector<float> w(4 * 5, 0.5f);
  w[1 * 5 + 2] = NAN;
  auto q = QuantizeFp8Block(w.data(), 4, 5, 128, 128, "t.weight");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("t.weight: weight [1,2] is not finite"), std::string::npos)
      << q.status().message();
}

}  // namespace
}  // namespace dsv3
