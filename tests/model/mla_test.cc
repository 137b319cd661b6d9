// Which MLA form a chunk runs in: the absorbed latent form for decode and short chunks over a
// long cache, expanded K/V for long prefills (DeepSeek-V3 dimensions), and forced forms as
// asked. (That both forms give the same logits is golden_test's AbsorbedAndNaiveAgree.)
#include <gtest/gtest.h>

#include "engine/model/config.h"
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
  for (int64_t S : {2, 100, 4096, 131072}) EXPECT_EQ(ChooseAttnForm(c, AttnImpl::kAuto, 1, S), AttnImpl::kAbsorb) << S;
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

}  // namespace
}  // namespace dsv3
