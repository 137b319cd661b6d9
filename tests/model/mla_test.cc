// Which MLA form a chunk runs in: the absorbed latent form for decode and short chunks over a
// long cache, expanded K/V for long prefills (DeepSeek-V3 dimensions), and forced forms as
// asked; where the latent cache's rows lie; and that a decode step of one sequence (its own
// path) gives the bits the same step gets beside another sequence (the general path). (That
// both forms give the same logits is golden_test's AbsorbedAndNaiveAgree.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "engine/base/threads.h"
#include "engine/model/config.h"
#include "engine/model/kv_cache.h"
#include "engine/model/mla.h"
#include "engine/model/rope.h"
#include "tests/testing/testing.h"
#include "tests/testing/weights.h"

namespace dsv3 {
namespace {

ModelConfig V3Attention() {
  ModelConfig c;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.kv_lora_rank = 512;
  return c;
}

TEST(ChooseAttnFormTest, DecodeAndShortChunksUseTheAbsorbedForm) {
  const ModelConfig c = V3Attention();
  for (int64_t S : {1, 2, 100, 4096, 131072}) EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAuto, 1, S), AttnImpl::kAbsorb) << S;
  EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAuto, 16, 4096), AttnImpl::kAbsorb);
}

TEST(ChooseAttnFormTest, LongPrefillsExpandKeysAndValues) {
  const ModelConfig c = V3Attention();
  EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAuto, 512, 512), AttnImpl::kNaive);
  EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAuto, 4096, 4096), AttnImpl::kNaive);
  EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAuto, 1024, 8192), AttnImpl::kNaive);
}

TEST(ChooseAttnFormTest, ForcedFormsAreKept) {
  const ModelConfig c = V3Attention();
  EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAbsorb, 4096, 4096), AttnImpl::kAbsorb);
  EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kNaive, 1, 4096), AttnImpl::kNaive);
}

// Every layer's and slot's cache rows start on a 64-byte line when the widths are multiples of
// 16 floats (256-bit loads of a row then never straddle two lines), the cache starts on a 2 MiB
// page boundary (its mapping asks for 2 MiB pages), and the rows stay where they were when the
// cache moves into its owner.
TEST(LatentKvCacheTest, RowsStartOnCacheLinesAndSurviveAMove) {
  for (int trial = 0; trial < 4; ++trial) {  // a few heap states
    std::vector<char> shift(static_cast<size_t>(trial * 8 + 1));
    LatentKvCache made(3, 2, 5, 256, 32);
    const float* first = made.kv(0, 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % (uintptr_t{2} << 20), 0u);
    for (int64_t layer = 0; layer < 3; ++layer) {
      for (int64_t slot = 0; slot < 2; ++slot) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(made.kv(layer, slot)) % 64, 0u) << layer << "," << slot;
        EXPECT_EQ(reinterpret_cast<uintptr_t>(made.pe(layer, slot)) % 64, 0u) << layer << "," << slot;
      }
    }
    made.kv(2, 1)[4 * 256 + 255] = 1.0f;  // the last float of the last row is inside the buffer
    made.pe(2, 1)[4 * 32 + 31] = 2.0f;
    LatentKvCache owner;
    owner = std::move(made);
    EXPECT_EQ(owner.kv(0, 0), first);
    EXPECT_EQ(owner.kv(2, 1)[4 * 256 + 255], 1.0f);
    EXPECT_EQ(owner.pe(2, 1)[4 * 32 + 31], 2.0f);
  }
}

// --kv-cache-dtype bf16: half the bytes; each stored value rounded to nearest even (ties to the
// even mantissa), read back widened exactly; a row's neighbours untouched; prefixes copied. The
// float32 cache hands out its own rows, with no copy.
TEST(LatentKvCacheTest, Bf16RowsAreTheFloat32RowsRoundedToNearestEven) {
  constexpr int64_t C = 256, R = 32;
  LatentKvCache f32(2, 2, 4, C, R), bf16(2, 2, 4, C, R, KvCacheDType::kBF16);
  EXPECT_EQ(bf16.bytes() * 2, f32.bytes());
  EXPECT_EQ(bf16.value_bytes(), 2);
  EXPECT_EQ(f32.value_bytes(), 4);
  EXPECT_EQ(bf16.kv(0, 0), nullptr);
  std::vector<float> latent = testing::RandomNormal(C, 1.0f, 5), rope_key = testing::RandomNormal(R, 1.0f, 6);
  // Halfway cases: 1 + 2^-8 lies between 1 and 1 + 2^-7 (goes to 1, the even one); 1 + 3 * 2^-8
  // between 1 + 2^-7 and 1 + 2^-6 (goes up); just above a halfway point rounds up.
  latent[0] = 1.00390625f;
  latent[1] = 1.01171875f;
  latent[2] = -1.00390637f;  // -(1 + 2^-8 + 2^-23)
  rope_key[0] = 3.0e38f;
  const std::vector<float> want_head = {1.0f, 1.015625f, -1.0078125f};
  f32.Store(1, 1, 2, latent.data(), rope_key.data());
  bf16.Store(1, 1, 2, latent.data(), rope_key.data());
  std::vector<float> scratch, scratch_pe;
  const float* kv = bf16.KvRows(1, 1, 0, 4, &scratch);
  const float* pe = bf16.PeRows(1, 1, 0, 4, &scratch_pe);
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(kv[2 * C + i], want_head[i]) << i;
  EXPECT_EQ(pe[2 * R], 3.00405527e38f);  // 3.0e38 to the nearest bf16
  for (int64_t i = 0; i < C; ++i) {
    EXPECT_LE(std::fabs(kv[2 * C + i] - latent[i]), std::ldexp(std::fabs(latent[i]), -8)) << i;  // half a bf16 step
    EXPECT_EQ(kv[C + i], 0.0f) << "row 1, " << i;
    EXPECT_EQ(kv[3 * C + i], 0.0f) << "row 3, " << i;
  }
  for (int64_t i = 1; i < R; ++i) EXPECT_LE(std::fabs(pe[2 * R + i] - rope_key[i]), std::ldexp(std::fabs(rope_key[i]), -8));
  EXPECT_EQ(bf16.KvRows(1, 0, 2, 1, &scratch)[0], 0.0f) << "another slot";
  EXPECT_EQ(bf16.KvRows(0, 1, 2, 1, &scratch)[0], 0.0f) << "another layer";
  // The float32 cache: the row as given, in place.
  std::vector<float> unused;
  EXPECT_EQ(f32.KvRows(1, 1, 2, 1, &unused), f32.kv(1, 1) + 2 * C);
  EXPECT_EQ(f32.PeRows(1, 1, 2, 1, &unused), f32.pe(1, 1) + 2 * R);
  EXPECT_TRUE(unused.empty());
  EXPECT_EQ(std::memcmp(f32.kv(1, 1) + 2 * C, latent.data(), C * sizeof(float)), 0);
  // A prefix of three positions, into slot 0 of layer 1 (and of layer 0, where it is zeros).
  bf16.CopyPrefix(1, 0, 3);
  const std::vector<float> from(kv, kv + 3 * C);
  const float* copied = bf16.KvRows(1, 0, 0, 3, &scratch);
  EXPECT_EQ(std::vector<float>(copied, copied + 3 * C), from);
  EXPECT_EQ(bf16.PeRows(1, 0, 2, 1, &scratch_pe)[0], 3.00405527e38f);
}

// A layer of MLA with H heads (q through q_a and q_b), its matrices random in one format (F32,
// or INT4 in groups of 32 with zero points, as `dsv3 quantize` writes them).
struct MlaLayer {
  ModelConfig c;
  std::vector<testing::OwnedWeight> owned;
  std::vector<float> q_norm, kv_norm;
  MlaWeights w;

  MlaLayer(int64_t H, bool int4) {
    c.hidden_size = 64;
    c.num_attention_heads = H;
    c.q_lora_rank = 32;
    c.kv_lora_rank = 64;
    c.qk_nope_head_dim = 16;
    c.qk_rope_head_dim = 8;
    c.v_head_dim = 16;
    c.max_position_embeddings = 512;
    owned.reserve(5);
    uint32_t seed = 11;
    const auto make = [&](int64_t rows, int64_t cols) {
      owned.push_back(int4 ? testing::MakeIntWeight(true, rows, cols, seed++, 32, false)
                           : testing::MakeWeight(DType::kF32, rows, cols, seed++));
      return owned.back().m;
    };
    const int64_t D = c.hidden_size, C = c.kv_lora_rank;
    w.q_a_proj = make(c.q_lora_rank, D);
    w.q_b_proj = make(H * c.qk_head_dim(), c.q_lora_rank);
    w.kv_a_proj_with_mqa = make(C + c.qk_rope_head_dim, D);
    w.kv_b_proj = make(H * (c.qk_nope_head_dim + c.v_head_dim), C);
    w.o_proj = make(D, H * c.v_head_dim);
    q_norm.assign(static_cast<size_t>(c.q_lora_rank), 1.25f);
    kv_norm.assign(static_cast<size_t>(C), 0.75f);
    w.q_a_layernorm = TensorView{q_norm.data(), DType::kF32, Shape{c.q_lora_rank}};
    w.kv_a_layernorm = TensorView{kv_norm.data(), DType::kF32, Shape{C}};
  }
};

// Positions below 129 are one span of the cache (the one-sequence step then runs the attention
// itself, per head group), 140 makes two (its spans and merge go as in the general path); 4
// heads split into two groups, 16 stay one.
TEST(MlaDecodeTest, OneSequenceStepGivesTheBitsOfTheSameStepInABatch) {
  for (const bool int4 : {false, true}) {
    for (const int64_t H : {4, 16}) {
      const MlaLayer layer(H, int4);
      const ModelConfig& c = layer.c;
      const int64_t D = c.hidden_size;
      const RopeTable rope(c, 512);
      for (const int64_t P : {20, 140}) {
        for (const int threads : {1, 2}) {
          SetNumThreads(threads);
          const std::string where = std::string(int4 ? "int4" : "f32") + " H " + std::to_string(H) + " P " +
                                    std::to_string(P) + " threads " + std::to_string(threads);
          LatentKvCache cache(1, 3, 256, c.kv_lora_rank, c.qk_rope_head_dim);
          MlaScratch s;
          s.Reserve(c, P);
          std::vector<float> out(static_cast<size_t>(P * D));
          // Slots 0 and 1 hold the same P positions, slot 2 others.
          const std::vector<float> prefix = testing::RandomNormal(P * D, 1.0f, 1);
          const std::vector<float> other = testing::RandomNormal(P * D, 1.0f, 2);
          for (int64_t slot = 0; slot < 3; ++slot)
            MlaForward(c, layer.w, 0, (slot < 2 ? prefix : other).data(), {SeqChunk{slot, 0, P, 0}}, P, rope, &cache,
                       AttnImpl::kAuto, &s, out.data());
          // The next token alone in slot 0, then in slot 1 beside slot 2's.
          const std::vector<float> step = testing::RandomNormal(2 * D, 1.0f, 3);
          std::vector<float> alone(static_cast<size_t>(D)), batch(static_cast<size_t>(2 * D));
          MlaForward(c, layer.w, 0, step.data(), {SeqChunk{0, P, 1, 0}}, 1, rope, &cache, AttnImpl::kAuto, &s,
                     alone.data());
          MlaForward(c, layer.w, 0, step.data(), {SeqChunk{1, P, 1, 0}, SeqChunk{2, P, 1, 1}}, 2, rope, &cache,
                     AttnImpl::kAuto, &s, batch.data());
          EXPECT_EQ(std::memcmp(alone.data(), batch.data(), static_cast<size_t>(D) * sizeof(float)), 0) << where;
          EXPECT_NE(alone[0], batch[D]) << where << ": the other sequence's row";
          // The step wrote the same cache row for slots 0 and 1.
          EXPECT_EQ(std::memcmp(cache.kv(0, 0) + P * c.kv_lora_rank, cache.kv(0, 1) + P * c.kv_lora_rank,
                                static_cast<size_t>(c.kv_lora_rank) * sizeof(float)), 0) << where;
        }
      }
      SetNumThreads(0);
    }
  }
}

}  // namespace
}  // namespace dsv3
