// Engine behaviour beyond the goldens: sliding-window attention, thread-count invariance,
// prefix reuse in scoring, sampling determinism, MoE routing rules and sum order, CUDA discovery.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/api.h"
#include "engine/base/dtype.h"
#include "engine/base/file.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cuda/device.h"
#include "engine/kernels/ops.h"
#include "engine/model/mlp.h"
#include "engine/model/moe.h"
#include "engine/model/moe_gate.h"
#include "tests/testing/testing.h"
#include "tests/testing/weights.h"

namespace dsv3 {
namespace {

std::vector<int32_t> Ids(int n, int vocab = 512) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 131 + 7) % vocab);
  return ids;
}

// A tiny-v3 checkpoint from `dsv3 init`, optionally with a sliding window in its config.
class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = testing::RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out",
                               dir_.path(), "--dtype", "f32", "--seed", "7"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::unique_ptr<Model> Load(int64_t window = 0, int64_t batch = 1, int64_t step = 256,
                              ModelOptions::Attention attention = ModelOptions::Attention::kAuto,
                              int64_t logit_rows = 256, ModelOptions::KvCache kv_cache = ModelOptions::KvCache::kF32) {
    auto j = nlohmann::json::parse(ReadFile(dir_.Join("config.json")).value());
    if (window > 0) j["sliding_window"] = window;
    else j.erase("sliding_window");
    EXPECT_TRUE(WriteFileAtomic(dir_.Join("config.json"), j.dump()).ok());
    ModelOptions o;
    o.max_seq_len = 256;
    o.batch_size = batch;
    o.max_step_tokens = step;
    o.max_logit_rows = logit_rows;
    o.attention = attention;
    o.kv_cache = kv_cache;
    auto m = Model::Load(dir_.path(), o);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return std::move(m.value());
  }
  testing::TempDir dir_;
};

TEST_F(EngineTest, SlidingWindowWiderThanSequenceEqualsFullAttention) {
  auto ids = Ids(48);
  std::vector<float> full, wide;
  ASSERT_TRUE(Load()->Logits(ids, 0, &full).ok());
  ASSERT_TRUE(Load(48)->Logits(ids, 0, &wide).ok());
  EXPECT_TRUE(testing::AllClose(full.data(), wide.data(), full.size(), 0.0, "window 48 vs full"));
}

TEST_F(EngineTest, SlidingWindowMatchesFullAttentionUntilItBinds) {
  const int W = 12, T = 40, V = 512;
  auto ids = Ids(T);
  std::vector<float> full, win;
  ASSERT_TRUE(Load()->Logits(ids, 0, &full).ok());
  ASSERT_TRUE(Load(W)->Logits(ids, 0, &win).ok());
  // Positions < W see all their past either way; later ones must not.
  EXPECT_TRUE(testing::AllClose(full.data(), win.data(), W * V, 0.0, "rows before the window binds"));
  double diff = 0;
  for (int64_t i = W * V; i < T * V; ++i) diff = std::max(diff, static_cast<double>(std::fabs(full[i] - win[i])));
  EXPECT_GT(diff, 1e-3) << "the window changed nothing";
}

TEST_F(EngineTest, SlidingWindowEqualsExplicitlyTruncatedContextInOneLayerModel) {
  // With one layer, position p's output depends only on tokens p-W+1..p, so windowed logits
  // at p equal full-attention logits of the sequence that starts at p-W+1 — except for RoPE,
  // which is relative: shifting positions leaves q·k unchanged. This is the explicit mask.
  auto j = nlohmann::json::parse(ReadFile(dir_.Join("config.json")).value());
  j["num_hidden_layers"] = 1;
  j["first_k_dense_replace"] = 1;
  j["num_nextn_predict_layers"] = 0;
  j["rope_scaling"] = nullptr;
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("config.json"), j.dump()).ok());
  const int W = 6, T = 20, V = 512;
  auto ids = Ids(T);
  auto windowed = Load(W);
  std::vector<float> win;
  ASSERT_TRUE(windowed->Logits(ids, 0, &win).ok());
  auto full = Load();
  for (int p = W; p < T; ++p) {
    std::vector<int32_t> ctx(ids.begin() + p - W + 1, ids.begin() + p + 1);
    std::vector<float> ref;
    ASSERT_TRUE(full->Logits(ctx, 0, &ref).ok());
    EXPECT_TRUE(testing::AllClose(win.data() + p * V, ref.data() + (W - 1) * V, V, 2e-5, "position " + std::to_string(p)));
  }
}

TEST_F(EngineTest, SlidingWindowDecodeMatchesPrefill) {
  auto ids = Ids(40);
  auto m = Load(10);
  std::vector<float> prefill, decode;
  ASSERT_TRUE(m->Logits(ids, 0, &prefill).ok());
  ASSERT_TRUE(m->Logits(ids, 5, &decode).ok());
  EXPECT_TRUE(testing::AllClose(prefill.data() + 4 * 512, decode.data(), decode.size(), 2e-5, "decode vs prefill"));
}

// Decode attention splits a sequence's cache into spans (>= 128 positions each) whose partial
// softmaxes are merged in order. Past 128 positions there are two; with a window of 60 the
// first lies wholly outside it. Decode must still match prefill, and not depend on threads.
TEST_F(EngineTest, DecodeOverSeveralCacheSpansMatchesPrefillForAnyThreadCount) {
  const int T = 220, P = 140, V = 512;
  auto ids = Ids(T);
  for (int64_t window : {0, 60}) {
    std::vector<float> prefill, one, two;
    ASSERT_TRUE(Load(window)->Logits(ids, 0, &prefill).ok());
    SetNumThreads(1);
    ASSERT_TRUE(Load(window)->Logits(ids, P, &one).ok());
    SetNumThreads(2);
    ASSERT_TRUE(Load(window)->Logits(ids, P, &two).ok());
    SetNumThreads(0);
    const std::string w = "window " + std::to_string(window);
    ASSERT_EQ(one.size(), static_cast<size_t>((T - P + 1) * V));
    EXPECT_TRUE(testing::AllClose(one.data(), two.data(), one.size(), 0.0, w + ": 1 vs 2 threads"));
    EXPECT_TRUE(testing::AllClose(prefill.data() + (P - 1) * V, one.data(), one.size(), 2e-5, w + ": decode vs prefill"));
  }
}

// --kv-cache-dtype bf16: every path reads the rows the cache rounded, so decode (two spans past
// 128 positions, with and without a window) and the expanded and absorbed prefills agree as
// they do over a float32 cache (prefix reuse: ScoringReusesPrefixesAndStaysExact), and the
// thread count changes no bit. The rounding is there (the logits move from the float32
// cache's) and small.
TEST_F(EngineTest, Bf16KvCacheKeepsDecodeAndBothPrefillFormsInAgreement) {
  const int T = 220, P = 140, V = 512;
  const auto bf16 = ModelOptions::KvCache::kBF16;
  const auto load = [&](int64_t window, ModelOptions::Attention form = ModelOptions::Attention::kAuto) {
    return Load(window, 1, 256, form, 256, bf16);
  };
  auto ids = Ids(T);
  for (int64_t window : {0, 60}) {
    const std::string w = "window " + std::to_string(window);
    std::vector<float> exact, prefill, absorbed, one, two;
    ASSERT_TRUE(Load(window)->Logits(ids, 0, &exact).ok());
    ASSERT_TRUE(load(window, ModelOptions::Attention::kNaive)->Logits(ids, 0, &prefill).ok());
    ASSERT_TRUE(load(window, ModelOptions::Attention::kAbsorbed)->Logits(ids, 0, &absorbed).ok());
    SetNumThreads(1);
    ASSERT_TRUE(load(window)->Logits(ids, P, &one).ok());
    SetNumThreads(2);
    ASSERT_TRUE(load(window)->Logits(ids, P, &two).ok());
    SetNumThreads(0);
    ASSERT_EQ(one.size(), static_cast<size_t>((T - P + 1) * V));
    double scale = 0;
    for (float v : exact) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    EXPECT_TRUE(testing::AllClose(one.data(), two.data(), one.size(), 0.0, w + ": 1 vs 2 threads"));
    // The forms' float32 noise (2e-5 over a float32 cache) now and then puts a cached value on the
    // other side of a bf16 rounding boundary, which moves it a whole bf16 step: here the forms
    // agree to ~1e-5 of the logit scale, at most ~1e-4; a row read from the wrong place, or not
    // widened, moves logits by a good part of it.
    EXPECT_TRUE(testing::AllClose(prefill.data() + (P - 1) * V, one.data(), one.size(), 1e-3 * scale,
                                  w + ": decode vs prefill"));
    EXPECT_TRUE(testing::AllClose(prefill.data(), absorbed.data(), prefill.size(), 1e-3 * scale,
                                  w + ": expanded vs absorbed"));
    // Against the float32 cache, as against the goldens (golden_test): most positions within 2%
    // of the scale (~0.4% typically here; a near-tied routing choice can flip at a few), and
    // moved.
    const auto [near, typical] = testing::CountNearPositions(prefill.data(), exact.data(), T, V, 2e-2 * scale);
    EXPECT_GE(near, static_cast<size_t>(T - (T + 9) / 10)) << w << ": positions within 2% of the logit scale, of " << T;
    EXPECT_GT(typical, 1e-4) << w << ": the cached values were rounded";
  }
}

// Long prefills expand keys and values and go through the query rows in blocks (96 rows at
// this cache length), each over the positions its last query sees. In one step of 220 tokens
// and in steps of 64 (later steps start past position 0), with and without a window, that must
// give the absorbed form's logits, and the same bits for 1 and 2 threads.
TEST_F(EngineTest, ExpandedPrefillInQueryBlocksMatchesAbsorbedForAnyThreadCount) {
  const auto ids = Ids(220);
  for (int64_t window : {0, 60}) {
    for (int64_t step : {256, 64}) {
      const std::string what = "window " + std::to_string(window) + ", step " + std::to_string(step);
      const auto logits = [&](ModelOptions::Attention form, int threads) {
        SetNumThreads(threads);
        auto model = Load(window, 1, step, form);
        std::vector<float> out;
        EXPECT_TRUE(model->Logits(ids, 0, &out).ok()) << what;
        SetNumThreads(0);
        return out;
      };
      const auto absorbed = logits(ModelOptions::Attention::kAbsorbed, 2);
      const auto one = logits(ModelOptions::Attention::kNaive, 1), two = logits(ModelOptions::Attention::kNaive, 2);
      ASSERT_EQ(one.size(), absorbed.size());
      EXPECT_TRUE(testing::AllClose(one.data(), two.data(), one.size(), 0.0, what + ": 1 vs 2 threads"));
      EXPECT_TRUE(testing::AllClose(two.data(), absorbed.data(), two.size(), 2e-5, what + ": expanded vs absorbed"));
    }
  }
}

// `dsv3 bench`'s prefill roofline counts attention's FLOPs in the form each chunk runs: with
// the same projections (counted by Linear), the two forms' tallies differ by exactly the
// difference of their attention products. One step of 220 tokens from position 0: absorbed,
// per head, q·W_uk, scores over all 220 latent and rope keys, the weighted sum, ·W_uv; expanded,
// keys and values for 220 positions, then query blocks of 96 rows (at this length) over the
// positions each block's last row sees.
TEST_F(EngineTest, PrefillFlopTallyFollowsTheAttentionForm) {
  const auto ids = Ids(220);
  const auto tally = [&](ModelOptions::Attention form) {
    auto model = Load(0, 1, 256, form);
    LinearCounters counters;
    SetLinearCounters(&counters);
    std::vector<float> out;
    EXPECT_TRUE(model->Logits(ids, 0, &out).ok());
    SetLinearCounters(nullptr);
    return static_cast<double>(counters.Read().flops);
  };
  const auto c = nlohmann::json::parse(ReadFile(dir_.Join("config.json")).value());
  const double L = c["num_hidden_layers"], H = c["num_attention_heads"], nope = c["qk_nope_head_dim"];
  const double R = c["qk_rope_head_dim"], vd = c["v_head_dim"], C = c["kv_lora_rank"], T = 220, S = 220;
  const double absorbed = 2 * T * nope * C + 2 * T * S * (C + R) + 2 * T * S * C + 2 * T * C * vd;
  double expanded = 2 * S * C * (nope + vd);
  for (double seen : {96.0, 192.0, 220.0}) {
    const double rows = seen == 220.0 ? 28.0 : 96.0;
    expanded += 2 * rows * seen * (nope + R + vd);
  }
  EXPECT_DOUBLE_EQ(tally(ModelOptions::Attention::kNaive) - tally(ModelOptions::Attention::kAbsorbed),
                   L * H * (expanded - absorbed));
}

TEST_F(EngineTest, ThreadCountDoesNotChangeResults) {
  auto ids = Ids(30);
  std::vector<float> one, two;
  SetNumThreads(1);
  ASSERT_TRUE(Load()->Logits(ids, 0, &one).ok());
  SetNumThreads(2);
  ASSERT_TRUE(Load()->Logits(ids, 0, &two).ok());
  SetNumThreads(0);
  // Work is split over output rows; each dot product is summed in the same order.
  EXPECT_TRUE(testing::AllClose(one.data(), two.data(), one.size(), 0.0, "1 vs 2 threads"));
}

// In a float32 cache and in a bf16 one (whose copied prefix is the rounded rows).
TEST_F(EngineTest, ScoringReusesPrefixesAndStaysExact) {
  auto ctx = Ids(30);
  std::vector<ScoreRequest> reqs;
  for (int32_t choice : {11, 22, 33, 44}) {
    ScoreRequest r{ctx, 30};
    r.tokens.push_back(choice);
    reqs.push_back(r);
  }
  for (const auto kv : {ModelOptions::KvCache::kF32, ModelOptions::KvCache::kBF16}) {
    const auto load = [&](int64_t slots, int64_t step) {
      return Load(0, slots, step, ModelOptions::Attention::kAuto, 256, kv);
    };
    auto model = load(2, 16);  // 2 slots, small steps: reuse across waves
    auto batched = model->Score(reqs);
    ASSERT_TRUE(batched.ok());
    // The first wave computes the context once (its first 29 positions: the 30th gives the first
    // choice's logits) and copies it into the other slot, then each of its two choices feeds
    // the last context position; the second wave finds the context cached in both slots and
    // feeds only that position for each choice (31 tokens minus the last, which needs no logits).
    EXPECT_EQ(model->tokens_fed(), 29 + 2 * 1 + 2 * 1);
    for (size_t i = 0; i < reqs.size(); ++i) {
      auto fresh = load(1, 256)->Score({reqs[i]});
      ASSERT_TRUE(fresh.ok());
      EXPECT_NEAR(batched.value()[i].sum, fresh.value()[0].sum, 2e-5) << i;
    }
  }
}

TEST_F(EngineTest, ScoringRunsRequestsThatShareAContextInOneSlot) {
  // Two unrelated 30-token contexts, four choices each, given as A A B B A A B B to 2 slots.
  // In that order every wave held one context's two choices and evicted the other's: each
  // context computed twice (29 positions, then the last for each choice). Sorted and cut into
  // one run per slot, each slot scores one context's four choices in turn: 30 + 3 each.
  std::vector<int32_t> a = Ids(30), b = Ids(30, 499);
  std::vector<ScoreRequest> reqs;
  for (int k = 0; k < 2; ++k)
    for (const auto* ctx : {&a, &b})
      for (int32_t choice : {11, 22}) {
        ScoreRequest r{*ctx, 30};
        r.tokens.push_back(choice + 7 * k);
        reqs.push_back(r);
      }
  auto model = Load(0, 2, 16);
  auto batched = model->Score(reqs);
  ASSERT_TRUE(batched.ok());
  EXPECT_EQ(model->tokens_fed(), 2 * (30 + 3));
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto fresh = Load(0, 1)->Score({reqs[i]});
    ASSERT_TRUE(fresh.ok());
    EXPECT_NEAR(batched.value()[i].sum, fresh.value()[0].sum, 2e-5) << i;
  }
}

TEST_F(EngineTest, SamplesOfOnePromptComputeItOnce) {
  // Four samples of a 40-token prompt in one wave of 4 slots: the prompt's first 39 positions
  // once, copied to the other slots, then each sample's last prompt position and 2 decode steps.
  GenerateParams p;
  p.max_new_tokens = 3;
  p.sampling = {0.9f, 1.0f, 0, 5};
  const auto prompt = Ids(40);
  auto model = Load(0, 4);
  auto four = model->Generate({prompt, prompt, prompt, prompt}, p);
  ASSERT_TRUE(four.ok());
  EXPECT_EQ(model->tokens_fed(), 39 + 4 * 1 + 4 * 2);
  // Each sample as its own stream would draw it alone.
  for (size_t i = 0; i < 4; ++i) {
    GenerateParams one = p;
    one.streams = {i};
    auto alone = Load(0, 1)->Generate({prompt}, one);
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ(four.value()[i].tokens, alone.value()[0].tokens) << i;
  }
}

TEST_F(EngineTest, LogitRowsCapSplitsStepsByWantedRowsOnly) {
  // Two sequences in 16-token steps; every row from score_from - 1 on is wanted (14 + 4).
  std::vector<ScoreRequest> reqs{{Ids(40), 26}, {Ids(37, 300), 33}};
  auto wide = Load(0, 2, 16);
  auto narrow = Load(0, 2, 16, ModelOptions::Attention::kAuto, 3);
  auto a = wide->Score(reqs), b = narrow->Score(reqs);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(a.value()[i].logprobs.size(), b.value()[i].logprobs.size());
    for (size_t j = 0; j < a.value()[i].logprobs.size(); ++j)
      EXPECT_NEAR(a.value()[i].logprobs[j], b.value()[i].logprobs[j], 2e-5) << i << " " << j;
  }
  EXPECT_EQ(narrow->tokens_fed(), wide->tokens_fed());  // no token runs twice
  // 39 + 36 tokens (a sequence's last needs no logits) fill 5 steps of 16 with the 256-row
  // buffer. With 3 rows a step the 18 wanted rows take at least 6 steps, and the 25 + 32
  // positions before them, which want no rows, still go up to 16 a step (7 steps in all; held
  // to 3 tokens a step they would take ~25).
  EXPECT_EQ(wide->forward_steps(), 5);
  EXPECT_GE(narrow->forward_steps(), 6);
  EXPECT_LE(narrow->forward_steps(), 8);
}

TEST_F(EngineTest, SamplingIsReproducibleForASeed) {
  GenerateParams p;
  p.max_new_tokens = 12;
  p.sampling = {0.9f, 0.95f, 40, 1234};
  auto m = Load(0, 2);
  auto a = m->Generate({Ids(5), Ids(9)}, p);
  auto b = Load(0, 2)->Generate({Ids(5), Ids(9)}, p);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value()[0].tokens, b.value()[0].tokens);
  EXPECT_EQ(a.value()[1].tokens, b.value()[1].tokens);
  p.sampling.seed = 99;
  auto c = Load(0, 2)->Generate({Ids(5), Ids(9)}, p);
  EXPECT_NE(a.value()[0].tokens, c.value()[0].tokens);
}

TEST_F(EngineTest, GenerateBatchEqualsOneByOne) {
  GenerateParams p;
  p.max_new_tokens = 8;
  auto batch = Load(0, 3)->Generate({Ids(3), Ids(17), Ids(8)}, p);
  ASSERT_TRUE(batch.ok());
  int i = 0;
  for (int n : {3, 17, 8}) {
    auto one = Load(0, 1)->Generate({Ids(n)}, p);
    EXPECT_EQ(batch.value()[i++].tokens, one.value()[0].tokens) << n;
  }
}

// --activations bf16 through the whole model (BF16 and FP8 weights from `dsv3 init` and
// `dsv3 quantize`; the scalar twin runs where the CPU lacks AVX-512 BF16): the same bits for 1
// and 2 threads, a batch of sequences generating what each generates alone, and logits near
// float32's (each matrix's activations move by at most 2^-8 of themselves) but not equal. Not
// bit for bit against decode: a prefill's and a decode step's attention differ in float32
// noise, and rounding to bf16 can turn that into a whole bf16 step (and a routing choice).
TEST_F(EngineTest, Bf16ActivationsThroughTheModel) {
  testing::TempDir dirs;
  auto r = testing::RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out",
                             dirs.Join("bf16"), "--dtype", "bf16", "--seed", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = testing::RunDsv3({"quantize", "--model-path", dirs.Join("bf16"), "--out", dirs.Join("fp8"), "--format", "fp8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = Ids(40);
  const int64_t V = 512;
  ModelOptions o;
  o.max_seq_len = 64;
  o.batch_size = 2;
  for (const char* format : {"bf16", "fp8"}) {
    auto m = Model::Load(dirs.Join(format), o);
    ASSERT_TRUE(m.ok()) << m.status().message();
    std::vector<float> exact, rounded, two;
    SetLinearActivations(LinearActivations::kF32);
    ASSERT_TRUE(m.value()->Logits(ids, 0, &exact).ok());
    SetLinearActivations(LinearActivations::kBf16);
    SetNumThreads(1);
    ASSERT_TRUE(m.value()->Logits(ids, 0, &rounded).ok());
    SetNumThreads(2);
    ASSERT_TRUE(m.value()->Logits(ids, 0, &two).ok());
    EXPECT_TRUE(testing::AllClose(rounded.data(), two.data(), rounded.size(), 0.0, std::string(format) + ": 1 vs 2 threads"));
    // Per position, the largest logit difference: small against the logits' scale at nearly
    // every position (a position whose routing flipped may differ more).
    double scale = 0;
    for (float v : exact) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    int near = 0;
    bool rounded_any = false;
    for (size_t p = 0; p < ids.size(); ++p) {
      double worst = 0;
      for (int64_t v = 0; v < V; ++v) worst = std::max(worst, static_cast<double>(std::fabs(exact[p * V + v] - rounded[p * V + v])));
      near += worst <= 2e-2 * scale;
      rounded_any = rounded_any || worst > 0;
    }
    EXPECT_TRUE(rounded_any) << format << ": the activations were rounded";
    EXPECT_GE(near, 34) << format << ": positions within 2% of the logit scale, of 40";
    GenerateParams g;
    g.max_new_tokens = 6;
    auto batch = m.value()->Generate({Ids(3), Ids(17)}, g);
    ASSERT_TRUE(batch.ok());
    for (int i = 0; i < 2; ++i) {
      auto one = m.value()->Generate({Ids(i == 0 ? 3 : 17)}, g);
      ASSERT_TRUE(one.ok());
      EXPECT_EQ(batch.value()[i].tokens, one.value()[0].tokens) << format << " sequence " << i;
    }
  }
  SetLinearActivations(LinearActivations::kInt8);
  SetNumThreads(0);
}

// DeepSeek-V3's router rule at a small size: 8 experts in 4 groups, top-2 groups, 2 picked,
// sigmoid scores, renormalized and scaled by 2.5.
ModelConfig NoauxTcRouter() {
  ModelConfig c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  return c;
}

TEST(MoeGate, NoauxTcBiasSelectsButDoesNotWeigh) {
  const ModelConfig c = NoauxTcRouter();
  const float logits[8] = {0.0f, 0.1f, 2.0f, 1.9f, -1.0f, 3.0f, 0.5f, 0.4f};
  const float bias[8] = {5.0f, 0, 0, 0, 0, 0, 0, 0};  // expert 0 wins selection via bias
  int32_t idx[2];
  float w[2];
  RouteOne(c, logits, bias, idx, w);
  EXPECT_EQ(idx[0], 0);
  // Group scores (sum of top-2 biased): g0 5.5+.., g1 ~1.76, g2 ~1.22, g3 ~1.22 -> groups 0,1.
  EXPECT_EQ(idx[1], 2);
  const float s0 = 1 / (1 + std::exp(-0.0f)), s2 = 1 / (1 + std::exp(-2.0f));
  EXPECT_NEAR(w[0], s0 / (s0 + s2) * 2.5f, 1e-6);  // unbiased scores, renormalized, scaled
  EXPECT_NEAR(w[1], s2 / (s0 + s2) * 2.5f, 1e-6);
}

// noaux_tc's bias may be stored in BF16 (the loader takes F32 or BF16): routing then uses its
// float32 values, and picks what the same bias in F32 picks.
TEST(MoeGate, Bf16BiasRoutesAsItsFloat32Values) {
  const ModelConfig c = NoauxTcRouter();
  const int64_t E = 8, D = 16, N = 3;
  std::vector<float> gate(static_cast<size_t>(E * D)), x(static_cast<size_t>(N * D));
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = 0.1f * static_cast<float>((i * 7) % 11) - 0.5f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.2f * static_cast<float>((i * 5) % 9) - 0.8f;
  const float bias[8] = {0, 0, 0, 0, 0, 0, 0, 4.0f};  // expert 7 wins selection via the bias
  std::vector<uint16_t> bias16(8);
  for (int e = 0; e < 8; ++e) bias16[e] = F32ToBF16(bias[e]);  // exact in BF16
  MoeWeights w;
  w.gate.w = TensorView{gate.data(), DType::kF32, Shape{E, D}};
  RouterScratch s;
  s.Reserve(c, N);
  int32_t idx32[N * 2], idx16[N * 2];
  float w32[N * 2], w16[N * 2];
  w.e_score_correction_bias = TensorView{bias, DType::kF32, Shape{E}};
  RouteTokens(c, w, x.data(), N, &s, idx32, w32);
  w.e_score_correction_bias = TensorView{bias16.data(), DType::kBF16, Shape{E}};
  RouteTokens(c, w, x.data(), N, &s, idx16, w16);
  for (int64_t i = 0; i < N * 2; ++i) {
    EXPECT_EQ(idx16[i], idx32[i]) << i;
    EXPECT_EQ(w16[i], w32[i]) << i;
  }
  for (int64_t t = 0; t < N; ++t) EXPECT_EQ(idx16[t * 2], 7) << "token " << t;
}

// A prefill's tokens are routed on every thread: each gets what RouteOne gives it alone from its
// logits, whatever the thread count.
TEST(MoeGate, TokensRouteAsEachAloneOnAnyThreadCount) {
  const ModelConfig c = NoauxTcRouter();
  const int64_t E = 8, D = 16, N = 200, k = 2;
  const auto gate = testing::RandomNormal(E * D, 1.0f, 91), x = testing::RandomNormal(N * D, 1.0f, 92);
  MoeWeights w;
  w.gate.w = TensorView{gate.data(), DType::kF32, Shape{E, D}};
  RouterScratch s;
  s.Reserve(c, N);
  for (int threads : {1, 2, 3}) {
    SetNumThreads(threads);
    std::vector<int32_t> idx(N * k);
    std::vector<float> wt(N * k);
    RouteTokens(c, w, x.data(), N, &s, idx.data(), wt.data());
    for (int64_t t = 0; t < N; ++t) {
      int32_t want_idx[2];
      float want_w[2];
      RouteOne(c, s.logits.data() + t * E, nullptr, want_idx, want_w);
      for (int64_t i = 0; i < k; ++i) {
        ASSERT_EQ(idx[t * k + i], want_idx[i]) << threads << " threads, token " << t;
        ASSERT_EQ(wt[t * k + i], want_w[i]) << threads << " threads, token " << t;
      }
    }
  }
  SetNumThreads(0);
}

// The router's rule spelled with sorts: scores, selection scores, group scores (the sum of a
// group's two best, largest first), the best groups, the best experts in them, ties to the lower
// index throughout.
void RouteBySorting(const ModelConfig& c, const float* logits, const float* bias, int32_t* indices, float* weights) {
  const int64_t E = c.n_routed_experts, G = c.n_group, per = E / G;
  std::vector<float> score(E), select(E);
  for (int64_t e = 0; e < E; ++e) {
    score[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    select[e] = score[e] + (bias ? bias[e] : 0.0f);
  }
  const auto best_first = [](const std::vector<float>& v) {
    std::vector<int32_t> order(v.size());
    for (size_t i = 0; i < v.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
    return order;
  };
  std::vector<float> group(G);
  for (int64_t g = 0; g < G; ++g) {
    const std::vector<float> members(select.begin() + g * per, select.begin() + (g + 1) * per);
    const auto order = best_first(members);
    group[g] = members[order[0]] + members[order[1]];
  }
  const auto groups = best_first(group);
  std::vector<float> masked(E, -INFINITY);
  for (int64_t i = 0; i < c.topk_group; ++i)
    for (int64_t e = groups[i] * per; e < (groups[i] + 1) * per; ++e) masked[e] = select[e];
  const auto experts = best_first(masked);
  float sum = 0.0f;
  for (int64_t i = 0; i < c.num_experts_per_tok; ++i) {
    indices[i] = experts[i];
    weights[i] = score[experts[i]];
    sum += weights[i];
  }
  for (int64_t i = 0; i < c.num_experts_per_tok; ++i)
    weights[i] = weights[i] / sum * static_cast<float>(c.routed_scaling_factor);
}

// RouteOne against the sorted spelling at DeepSeek-V3's shape (256 experts, 8 groups, 4 kept, 8
// picked) and bench-v3-mini's (64, 8, 4, 6), with logits from five values so that scores, group
// sums and selections tie often, with and without a bias.
TEST(MoeGate, RoutesAsTheSortedRuleWithTies) {
  ModelConfig c = NoauxTcRouter();
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> level(-2, 2);
  for (const auto& [E, k] : {std::pair<int64_t, int64_t>{256, 8}, {64, 6}}) {
    c.n_routed_experts = E;
    c.num_experts_per_tok = k;
    c.n_group = 8;
    c.topk_group = 4;
    std::vector<float> logits(static_cast<size_t>(E)), bias(static_cast<size_t>(E));
    for (int trial = 0; trial < 300; ++trial) {
      for (int64_t e = 0; e < E; ++e) {
        logits[e] = 0.5f * static_cast<float>(level(rng));
        bias[e] = 0.25f * static_cast<float>(level(rng) % 2);
      }
      const float* b = trial % 2 ? bias.data() : nullptr;
      std::vector<int32_t> got_idx(k), want_idx(k);
      std::vector<float> got_w(k), want_w(k);
      RouteOne(c, logits.data(), b, got_idx.data(), got_w.data());
      RouteBySorting(c, logits.data(), b, want_idx.data(), want_w.data());
      ASSERT_EQ(got_idx, want_idx) << E << " experts, trial " << trial;
      ASSERT_EQ(got_w, want_w) << E << " experts, trial " << trial;
    }
  }
}

TEST(MoeGate, GreedySoftmaxDoesNotRenormalize) {
  ModelConfig c;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.topk_method = TopkMethod::kGreedy;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.routed_scaling_factor = 1.0;
  const float logits[4] = {1.0f, 2.0f, 0.0f, 3.0f};
  int32_t idx[2];
  float w[2];
  RouteOne(c, logits, nullptr, idx, w);
  EXPECT_EQ(idx[0], 3);
  EXPECT_EQ(idx[1], 1);
  const double z = std::exp(1.0) + std::exp(2.0) + 1 + std::exp(3.0);
  EXPECT_NEAR(w[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(w[1], std::exp(2.0) / z, 1e-6);
}

// A token's MoE output is its shared experts' output plus each routed expert's, weighted, added
// in expert order (DeepSeek's reference loops over experts), whichever tokens share a step and
// however the sum is split: each expert here runs on the token alone (the fast kernels give one
// token the bits of many), and the step's token counts take both the inline and parallel sums
// and a decode step's one token (its experts share one prepared x), with float32 experts, with
// INT4 ones (which take x quantized to int8: several tokens are quantized once and each expert
// copies its rows), with INT4 routed experts beside float32 shared ones (whose x is prepared in
// another form), with no shared experts (a decode step's routed experts then prepare x
// themselves), and with routed experts of two int8 forms (INT4 and INT8: each expert's floats
// are gathered and quantized for it).
TEST(MoeForward, EachTokenAddsItsExpertsInExpertOrderAfterTheSharedOnes) {
  if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "needs the fast kernels (" << GetCpuFeatures().ToString() << ")";
  // 0: all float32, 1: all INT4, 2: INT4 routed, float32 shared, 3: float32, no shared experts,
  // 4: INT4 and INT8 routed experts in turn, INT4 shared
  for (const int formats : {0, 1, 2, 3, 4}) {
    const bool int4 = formats == 1 || formats == 2 || formats == 4;
    ModelConfig c = NoauxTcRouter();
    c.hidden_size = int4 ? 64 : 40;  // INT4 takes int8 activations in whole blocks of 32
    c.moe_intermediate_size = int4 ? 32 : 24;
    c.n_shared_experts = formats == 3 ? 0 : 1;
    const int64_t D = c.hidden_size, I = c.moe_intermediate_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
    std::vector<testing::OwnedWeight> store;
    store.reserve(128);
    enum Form { kF32, kInt4, kInt8 };
    const auto matrix = [&](int64_t rows, int64_t cols, float scale, Form form) {
      const uint32_t seed = static_cast<uint32_t>(store.size() + 1);
      if (form != kF32) {
        store.push_back(testing::MakeIntWeight(form == kInt4, rows, cols, seed, 32, false));
      } else {
        testing::OwnedWeight o;
        std::vector<float> v = testing::RandomNormal(rows * cols, scale, seed);
        o.bytes.resize(v.size() * sizeof(float));
        std::memcpy(o.bytes.data(), v.data(), o.bytes.size());
        o.m.w = TensorView{o.bytes.data(), DType::kF32, Shape{rows, cols}};
        store.push_back(std::move(o));
      }
      return store.back().m;
    };
    const auto mlp = [&](Form f) {
      return MlpWeights{matrix(I, D, 0.3f, f), matrix(I, D, 0.3f, f), matrix(D, I, 0.3f, f)};
    };
    MoeWeights w;
    w.gate = matrix(E, D, 0.5f, kF32);
    for (int64_t e = 0; e < E; ++e) w.experts.push_back(mlp(!int4 ? kF32 : formats == 4 && e % 2 == 1 ? kInt8 : kInt4));
    if (formats != 3) w.shared = mlp(formats == 1 || formats == 4 ? kInt4 : kF32);
    SetLinearKernel(int4 ? LinearKernel::kAuto : LinearKernel::kAvx2);  // INT4: AVX-512 VNNI where present
    for (int64_t N : {int64_t{1}, int64_t{3}, int64_t{37}}) {
      const std::vector<float> x = testing::RandomNormal(N * D, 1.0f, 99 + static_cast<uint32_t>(N));
      MoeScratch s;
      s.Reserve(c, N);
      std::vector<float> out(static_cast<size_t>(N * D), std::nanf(""));  // every element written
      MoeForward(c, w, x.data(), N, &s, out.data());
      std::vector<float> gate(static_cast<size_t>(I)), up(static_cast<size_t>(I)), y(static_cast<size_t>(D)),
          want(static_cast<size_t>(D), 0.0f);
      for (int64_t t = 0; t < N; ++t) {
        if (formats == 3) {
          std::fill(want.begin(), want.end(), 0.0f);
        } else {
          MlpForward(w.shared, x.data() + t * D, 1, gate.data(), up.data(), want.data(), false);
        }
        std::vector<std::pair<int32_t, float>> picks;
        for (int64_t i = 0; i < k; ++i) picks.push_back({s.indices[t * k + i], s.weights[t * k + i]});
        std::sort(picks.begin(), picks.end());
        for (const auto& [e, gw] : picks) {
          MlpForward(w.experts[e], x.data() + t * D, 1, gate.data(), up.data(), y.data(), false);
          for (int64_t d = 0; d < D; ++d) want[d] += gw * y[d];
        }
        for (int64_t d = 0; d < D; ++d)
          ASSERT_EQ(out[t * D + d], want[d]) << "formats " << formats << " N=" << N << " token " << t << " element " << d;
      }
    }
    SetLinearKernel(LinearKernel::kAuto);
  }
}

TEST(Cuda, DeviceDiscoveryNeverFailsWithoutAGpu) {
  const int n = cuda::DeviceCount();
  EXPECT_GE(n, 0);
  if (n == 0) GTEST_SKIP() << "no CUDA device: GPU checks skipped (the CPU path is the reference)";
}

}  // namespace
}  // namespace dsv3
