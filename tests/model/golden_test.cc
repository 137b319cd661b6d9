// The engine against DeepSeek's reference implementation: every checkpoint in
// ../shared/models matches its golden.safetensors (prefill, incremental decode, greedy
// tokens, per-layer hidden states, router picks as sets).
//
// Tolerances (from ../shared/models/README.md, derived there from float32 reduction noise):
// logits 1e-4 absolute (the reference's own prefill-vs-decode spread is ~8e-6); hidden
// states 1e-5 relative to the tensor's largest magnitude; router sets identical (the smallest
// selection-score gap in the data is 1e-4, far above float32 noise).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/api.h"
#include "engine/base/file.h"
#include "engine/io/safetensors.h"
#include "engine/kernels/ops.h"
#include "engine/model/transformer.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

using nlohmann::json;

constexpr double kLogitTol = 1e-4;

class Golden {
 public:
  explicit Golden(const std::string& dir) {
    auto f = SafetensorsFile::Open(dir + "/golden.safetensors");
    EXPECT_TRUE(f.ok()) << f.status().message();
    file_ = std::move(f.value());
    meta_ = json::parse(ReadFile(dir + "/golden.json").value());
  }
  std::vector<int32_t> Ids(const std::string& name) const {
    const auto* e = file_->Find(name);
    EXPECT_NE(e, nullptr) << name;
    TensorView v = file_->View(*e);
    return std::vector<int32_t>(v.as<int32_t>(), v.as<int32_t>() + v.numel());
  }
  std::vector<float> F32(const std::string& name) const { return ToF32Vector(file_->View(*file_->Find(name))); }
  bool Has(const std::string& name) const { return file_->Find(name) != nullptr; }
  const json& meta() const { return meta_; }

 private:
  std::unique_ptr<SafetensorsFile> file_;
  json meta_;
};

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    DSV3_REQUIRE_SHARED();
    dir_ = testing::SharedDir() + "/models/" + GetParam();
    golden_ = std::make_unique<Golden>(dir_);
  }
  std::unique_ptr<Model> Load(ModelOptions::Attention attention = ModelOptions::Attention::kAuto, int64_t batch = 1,
                              ModelOptions::KvCache kv_cache = ModelOptions::KvCache::kF32) {
    ModelOptions o;
    o.max_seq_len = 256;
    o.batch_size = batch;
    o.max_step_tokens = 64;  // smaller than the longest sequence: exercises split prefills
    o.attention = attention;
    o.kv_cache = kv_cache;
    auto m = Model::Load(dir_, o);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return std::move(m.value());
  }
  std::string dir_;
  std::unique_ptr<Golden> golden_;
};

TEST_P(GoldenTest, PrefillLogits) {
  auto model = Load();
  // Every file tensor is used; the MTP module is bound where the checkpoint has one.
  EXPECT_TRUE(model->unused_tensors().empty()) << model->unused_tensors().front();
  EXPECT_EQ(model->mtp_loaded(), model->config().num_nextn_predict_layers > 0);
  for (int i = 0; golden_->Has("prefill." + std::to_string(i) + ".tokens"); ++i) {
    auto ids = golden_->Ids("prefill." + std::to_string(i) + ".tokens");
    auto want = golden_->F32("prefill." + std::to_string(i) + ".logits");
    std::vector<float> got;
    ASSERT_TRUE(model->Logits(ids, 0, &got).ok());
    ASSERT_EQ(got.size(), want.size());
    EXPECT_TRUE(testing::AllClose(got.data(), want.data(), got.size(), kLogitTol, "prefill " + std::to_string(i)));
  }
}

// --activations bf16 against DeepSeek's float32 logits: F32 checkpoints (tiny-v3) are untouched
// (bit for bit the float32 result); with BF16 weights each matrix's activations move by at most
// 2^-8 of themselves, so nearly every position's logits stay within 2% of their scale (~0.5%
// typically). A few may differ more: a near-tied routing choice can flip (the goldens' routers
// are close to ties by design; at 70 tokens two positions of tiny-v3-yarn-bf16 do).
TEST_P(GoldenTest, Bf16ActivationsStayNearTheGolden) {
  auto model = Load();
  for (int i = 0; golden_->Has("prefill." + std::to_string(i) + ".tokens"); ++i) {
    auto ids = golden_->Ids("prefill." + std::to_string(i) + ".tokens");
    auto want = golden_->F32("prefill." + std::to_string(i) + ".logits");
    std::vector<float> exact, got;
    SetLinearActivations(LinearActivations::kF32);
    ASSERT_TRUE(model->Logits(ids, 0, &exact).ok());
    SetLinearActivations(LinearActivations::kBf16);
    ASSERT_TRUE(model->Logits(ids, 0, &got).ok());
    SetLinearActivations(LinearActivations::kInt8);
    ASSERT_EQ(got.size(), want.size());
    if (GetParam() == "tiny-v3") {
      EXPECT_EQ(got, exact) << "F32 weights keep float32 activations";
      continue;
    }
    const size_t P = ids.size(), V = want.size() / P;
    double scale = 0;
    for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    const auto [near, typical] = testing::CountNearPositions(got.data(), want.data(), P, V, 2e-2 * scale);
    EXPECT_GE(near, P - (P + 9) / 10) << "prefill " << i << ": positions within 2% of the logit scale, of " << P;
    EXPECT_GT(typical, kLogitTol) << "prefill " << i << ": the activations were rounded";
  }
}

// --kv-cache-dtype bf16 against DeepSeek's float32 logits: each cached latent and rope key is
// rounded to bf16 (2^-9 of itself at most), so, as with bf16 activations, nearly every
// position's logits stay within 2% of their scale, and they do move (the rounding is there).
TEST_P(GoldenTest, Bf16KvCacheStaysNearTheGolden) {
  auto loaded = Load(ModelOptions::Attention::kAuto, 1, ModelOptions::KvCache::kBF16);
  ASSERT_NE(loaded, nullptr);
  Model& model = *loaded;
  EXPECT_EQ(model.kv_cache_value_bytes(), 2);
  for (int i = 0; golden_->Has("prefill." + std::to_string(i) + ".tokens"); ++i) {
    auto ids = golden_->Ids("prefill." + std::to_string(i) + ".tokens");
    auto want = golden_->F32("prefill." + std::to_string(i) + ".logits");
    std::vector<float> got;
    ASSERT_TRUE(model.Logits(ids, 0, &got).ok());
    ASSERT_EQ(got.size(), want.size());
    const size_t P = ids.size(), V = want.size() / P;
    double scale = 0;
    for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    const auto [near, typical] = testing::CountNearPositions(got.data(), want.data(), P, V, 2e-2 * scale);
    EXPECT_GE(near, P - (P + 9) / 10) << "prefill " << i << ": positions within 2% of the logit scale, of " << P;
    EXPECT_GT(typical, kLogitTol) << "prefill " << i << ": the cached values were rounded";
  }
}

// Both at once, decoding: --activations bf16 over a bf16 cache rounds decode's queries and
// probabilities to bf16 too (vdpbf16ps against the cached bf16 values). The decode rows stay as
// near DeepSeek's logits as either rounding alone, and they move: for tiny-v3 (F32 weights,
// whose products keep float32 activations) only the attention's products differ from the
// default run.
TEST_P(GoldenTest, Bf16ActivationsOverABf16CacheDecodeNearTheGolden) {
  auto loaded = Load(ModelOptions::Attention::kAuto, 1, ModelOptions::KvCache::kBF16);
  ASSERT_NE(loaded, nullptr);
  Model& model = *loaded;
  const auto ids = golden_->Ids("decode.tokens");
  const int64_t P = golden_->meta()["decode"]["prefix_length"].get<int64_t>();
  const auto want = golden_->F32("decode.logits");
  std::vector<float> plain, got;
  ASSERT_TRUE(model.Logits(ids, P, &plain).ok());
  SetLinearActivations(LinearActivations::kBf16);
  const Status st = model.Logits(ids, P, &got);
  SetLinearActivations(LinearActivations::kInt8);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(got.size(), want.size());
  const size_t rows = static_cast<size_t>(ids.size()) - static_cast<size_t>(P) + 1, V = want.size() / rows;
  double scale = 0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  const auto [near, typical] = testing::CountNearPositions(got.data(), want.data(), rows, V, 2e-2 * scale);
  EXPECT_GE(near, rows - (rows + 9) / 10) << "decode rows within 2% of the logit scale, of " << rows;
  EXPECT_NE(got, plain) << "the decode queries and probabilities were rounded";
}

TEST_P(GoldenTest, NaiveAttentionAgreesWithAbsorbed) {
  auto absorbed = Load(ModelOptions::Attention::kAbsorbed), naive = Load(ModelOptions::Attention::kNaive);
  auto ids = golden_->Ids("prefill.2.tokens");
  std::vector<float> a, b;
  ASSERT_TRUE(absorbed->Logits(ids, 0, &a).ok());
  ASSERT_TRUE(naive->Logits(ids, 0, &b).ok());
  // Same math in another association order: float32 noise, well under the golden tolerance.
  EXPECT_TRUE(testing::AllClose(a.data(), b.data(), a.size(), 2e-5, "absorbed vs naive"));
}

TEST_P(GoldenTest, IncrementalDecode) {
  auto model = Load();
  auto ids = golden_->Ids("decode.tokens");
  const int64_t P = golden_->meta()["decode"]["prefix_length"].get<int64_t>();
  auto want = golden_->F32("decode.logits");
  std::vector<float> got;
  ASSERT_TRUE(model->Logits(ids, P, &got).ok());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(testing::AllClose(got.data(), want.data(), got.size(), kLogitTol, "decode"));
}

TEST_P(GoldenTest, GreedyGeneration) {
  auto model = Load();
  auto prompt = golden_->Ids("greedy.prompt");
  auto want = golden_->Ids("greedy.generated");
  GenerateParams p;
  p.max_new_tokens = static_cast<int64_t>(want.size());
  auto r = model->Generate({prompt}, p);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value()[0].tokens, want);
  // The logits behind each greedy choice, through the cache.
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), want.begin(), want.end() - 1);
  std::vector<float> got;
  ASSERT_TRUE(model->Logits(all, static_cast<int64_t>(prompt.size()), &got).ok());
  auto want_logits = golden_->F32("greedy.logits");
  ASSERT_EQ(got.size(), want_logits.size());
  EXPECT_TRUE(testing::AllClose(got.data(), want_logits.data(), got.size(), kLogitTol, "greedy logits"));
}

TEST_P(GoldenTest, HiddenStatesAndRouterPicks) {
  ModelOptions o;
  o.max_seq_len = 256;
  o.max_step_tokens = 256;
  auto model = Model::Load(dir_, o);
  ASSERT_TRUE(model.ok());
  const int seq = golden_->meta()["hidden_states"]["sequence"].get<int>();
  auto ids = golden_->Ids("prefill." + std::to_string(seq) + ".tokens");
  ForwardTrace trace;
  std::vector<float> logits;
  ASSERT_TRUE(model.value()->Logits(ids, 0, &logits, &trace).ok());
  const auto& cfg = model.value()->config();
  auto check = [&](const std::vector<float>& got, const std::string& name) {
    auto want = golden_->F32(name);
    ASSERT_EQ(got.size(), want.size()) << name;
    float peak = 0;
    for (float v : want) peak = std::max(peak, std::fabs(v));
    EXPECT_TRUE(testing::AllClose(got.data(), want.data(), got.size(), 1e-5 * std::max(1.0f, peak), name));
  };
  check(trace.hidden[0], "hidden.embed");
  for (int64_t L = 0; L < cfg.num_hidden_layers; ++L) check(trace.hidden[L + 1], "hidden.layer" + std::to_string(L));
  check(trace.hidden.back(), "hidden.final_norm");

  const int64_t k = cfg.num_experts_per_tok, T = static_cast<int64_t>(ids.size());
  int moe_layers = 0;
  for (int64_t L = cfg.first_k_dense_replace; L < cfg.num_hidden_layers; ++L, ++moe_layers) {
    auto want_idx = golden_->Ids("router.layer" + std::to_string(L) + ".indices");
    auto want_w = golden_->F32("router.layer" + std::to_string(L) + ".weights");
    const auto& got_idx = trace.router_indices[L];
    const auto& got_w = trace.router_weights[L];
    ASSERT_EQ(got_idx.size(), want_idx.size());
    for (int64_t t = 0; t < T; ++t) {
      std::set<int32_t> a(got_idx.begin() + t * k, got_idx.begin() + (t + 1) * k);
      std::set<int32_t> b(want_idx.begin() + t * k, want_idx.begin() + (t + 1) * k);
      EXPECT_EQ(a, b) << "layer " << L << " token " << t;
      for (int64_t j = 0; j < k; ++j) {  // weights aligned by expert id
        auto pos = std::find(want_idx.begin() + t * k, want_idx.begin() + (t + 1) * k, got_idx[t * k + j]);
        if (pos == want_idx.begin() + (t + 1) * k) continue;
        EXPECT_NEAR(got_w[t * k + j], want_w[pos - want_idx.begin()], 1e-5) << "layer " << L << " token " << t;
      }
    }
  }
  EXPECT_GT(moe_layers, 0);
}

TEST_P(GoldenTest, BatchedScoringMatchesSingleSequences) {
  // Three sequences of different lengths in one batch, packed into shared forward steps.
  auto model = Load(ModelOptions::Attention::kAuto, 3);
  std::vector<ScoreRequest> reqs;
  for (int i = 0; i < 3; ++i) reqs.push_back({golden_->Ids("prefill." + std::to_string(i) + ".tokens"), 1});
  auto scores = model->Score(reqs);
  ASSERT_TRUE(scores.ok()) << scores.status().message();
  for (int i = 0; i < 3; ++i) {
    auto want = golden_->F32("prefill." + std::to_string(i) + ".logits");
    const auto& ids = reqs[i].tokens;
    const int64_t V = model->config().vocab_size;
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
      const float* row = want.data() + t * V;
      float m = *std::max_element(row, row + V);
      double s = 0;
      for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v] - m));
      const double lp = row[ids[t + 1]] - m - std::log(s);
      EXPECT_NEAR(scores.value()[i].logprobs[t], lp, kLogitTol) << "seq " << i << " pos " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, GoldenTest, ::testing::Values("tiny-v3", "tiny-v3-yarn-bf16", "tiny-v2-lite"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace dsv3
