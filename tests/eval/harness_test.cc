// The harness on a real tokenizer: lm-eval's context/continuation split, and a request that
// cannot be built is recorded on its own result without stopping the batch.
#include <gtest/gtest.h>

#include "engine/io/tokenizer.h"
#include "eval/harness.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

class HarnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DSV3_REQUIRE_SHARED();
    auto r = testing::RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3-vocab.yaml",
                               "--out", dir_.path(), "--tokenizer",
                               testing::SharedDir() + "/datasets/tokenizer/deepseek-v3"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto tok = Tokenizer::Load(dir_.path());
    ASSERT_TRUE(tok.ok());
    tokenizer_ = std::make_unique<Tokenizer>(std::move(tok.value()));
    ModelOptions o;
    o.max_seq_len = 256;
    o.batch_size = 2;
    auto m = Model::Load(dir_.path(), o);
    ASSERT_TRUE(m.ok());
    model_ = std::move(m.value());
    cache_ = std::move(RequestCache::Open("").value());
  }
  testing::TempDir dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<RequestCache> cache_;
};

TEST_F(HarnessTest, TrailingContextSpacesMoveToTheContinuation) {
  Harness h(model_.get(), tokenizer_.get(), cache_.get(), {});
  std::vector<int32_t> a_ctx, a_cont, b_ctx, b_cont;
  ASSERT_TRUE(h.EncodePair("Answer: ", "B", &a_ctx, &a_cont).ok());
  ASSERT_TRUE(h.EncodePair("Answer:", " B", &b_ctx, &b_cont).ok());
  EXPECT_EQ(a_ctx, b_ctx);
  EXPECT_EQ(a_cont, b_cont);
  EXPECT_EQ(a_cont, tokenizer_->Encode(" B").value());
}

TEST_F(HarnessTest, UnbuildableRequestIsRecordedNotFatal) {
  Harness h(model_.get(), tokenizer_.get(), cache_.get(), {});
  auto r = h.Loglikelihood("t", {{"The sky is", " blue"}, {"The sky is", ""}, {"Water is", " wet"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r.value()[0].error.empty());
  EXPECT_FALSE(r.value()[1].error.empty());
  EXPECT_TRUE(r.value()[2].error.empty());
  EXPECT_LT(r.value()[0].logprob, 0.0);
  EXPECT_EQ(r.value()[0].n_tokens, 1);
}

// A generation prompt longer than the window leaves it keeps its end, as lm-eval does, and the
// run says how many were cut (it had been silent).
TEST_F(HarnessTest, CutGenerationPromptsAreCounted) {
  Harness h(model_.get(), tokenizer_.get(), cache_.get(), {});
  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += " word" + std::to_string(i);
  GenRequest cut, whole;
  cut.prompt = long_prompt;
  cut.max_new_tokens = whole.max_new_tokens = 2;
  whole.prompt = "def f(x):";
  ::testing::internal::CaptureStderr();
  auto r = h.GenerateUntil("t", {cut, whole});
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_NE(err.find("t: 1 of 2 prompts did not fit --max-seq-len"), std::string::npos) << err;
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(h.GenerateUntil("u", {whole}).ok());
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("did not fit"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
