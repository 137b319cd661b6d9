// Which MLA form a chunk runs in: the absorbed latent form for decode and short chunks over a
// long cache, expanded K/V for long prefills (DeepSeek-V3 dimensions), and forced forms as
// asked; and where the latent cache's rows lie. (That both forms give the same logits is
// golden_test's AbsorbedAndNaiveAgree.)
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/kv_cache.h"
#include "engine/model/mla.h"

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

}  // namespace
}  // namespace dsv3
