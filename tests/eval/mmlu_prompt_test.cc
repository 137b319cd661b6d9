// MMLU requests byte for byte. The expected strings below were written by hand from the
// shared CSVs (abstract_algebra dev + test, formal_logic dev + test row 8) following
// lm-evaluation-harness's template, not produced by this code.
#include "eval/mmlu_prompt.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

std::string MmluRoot() { return testing::SharedDir() + "/datasets/mmlu"; }

TEST(MmluPrompt, FixtureStripsQuestionOnly) {
  MmluQuestion shot{" \tWhat is 1+1?\n", {" 2", "3 ", "4", "5"}, 0, 1};
  MmluQuestion test{"Q?\u3000", {"a", "b", "c", "d"}, 3, 2};
  // U+3000 (ideographic space) is whitespace to Python's str.strip(), so it goes too.
  EXPECT_EQ(MmluContext("high_school_us_history", {shot}, 1, test),
            "The following are multiple choice questions (with answers) about high school us "
            "history.\n\nWhat is 1+1?\nA.  2\nB. 3 \nC. 4\nD. 5\nAnswer: A\n\n"
            "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
  EXPECT_EQ(MmluContext("x", {shot}, 0, test),
            "The following are multiple choice questions (with answers) about x.\n\n"
            "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
}

TEST(MmluPrompt, AbstractAlgebraFiveShotByteForByte) {
  DSV3_REQUIRE_SHARED();
  auto data = LoadMmluSubject(MmluRoot(), "abstract_algebra");
  ASSERT_TRUE(data.ok()) << data.status().message();
  auto reqs = BuildMmluRequests({*data}, 5);
  ASSERT_TRUE(reqs.ok());
  ASSERT_EQ(reqs->size(), 4u * 100);
  const std::string shots =
      "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
      "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\n"
      "Answer: B\n\n"
      "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | "
      "If H and K are subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\n"
      "C. True, False\nD. False, True\nAnswer: B\n\n"
      "Statement 1 | Every element of a group generates a cyclic subgroup of the group. "
      "Statement 2 | The symmetric group S_10 has 10 elements.\nA. True, True\nB. False, False\n"
      "C. True, False\nD. False, True\nAnswer: C\n\n"
      "Statement 1| Every function from a finite set onto itself must be one to one. "
      "Statement 2 | Every subgroup of an abelian group is abelian.\nA. True, True\n"
      "B. False, False\nC. True, False\nD. False, True\nAnswer: A\n\n"
      "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n";
  const std::string doc0 =
      shots +
      "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
      "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:";
  const std::string doc2 =
      shots +
      "Find all zeros in the indicated finite field of the given polynomial with coefficients "
      "in that field. x^5 + 3x^3 + x^2 + 2x in Z_5\nA. 0\nB. 1\nC. 0,1\nD. 0,4\nAnswer:";
  for (int c = 0; c < 4; ++c) {
    const MmluRequest& r0 = (*reqs)[c];
    EXPECT_EQ(r0.task, "mmlu_abstract_algebra");
    EXPECT_EQ(r0.doc_id, 0);
    EXPECT_EQ(r0.context, doc0);
    EXPECT_EQ(r0.continuation, std::string(" ") + static_cast<char>('A' + c));
    EXPECT_EQ(r0.gold, 1);  // B
    const MmluRequest& r2 = (*reqs)[8 + c];
    EXPECT_EQ(r2.doc_id, 2);
    EXPECT_EQ(r2.context, doc2);
    EXPECT_EQ(r2.gold, 3);  // D
  }
}

TEST(MmluPrompt, FormalLogicStrippedQuestionWithNewlines) {
  DSV3_REQUIRE_SHARED();
  auto data = LoadMmluSubject(MmluRoot(), "formal_logic");
  ASSERT_TRUE(data.ok()) << data.status().message();
  auto reqs = BuildMmluRequests({*data}, 2);
  ASSERT_TRUE(reqs.ok());
  // Test row 8 (CSV line 18) starts with a space and spans six lines; dev row 0 starts with
  // a space too. Both lose only that leading space.
  const std::string expected =
      "The following are multiple choice questions (with answers) about formal logic.\n\n"
      "Select the best translation into predicate logic: No people drive on Mars.\nA. ~Pd\n"
      "B. (∀x)(Px ∨ ~Dx)\nC. (∀x)(Px ⊃ ~Dx)\nD. ~Dp\nAnswer: C\n\n"
      "Select the best translation into predicate logic.George borrows Hector's lawnmower. "
      "(g: George; h: Hector; l: Hector's lawnmower; Bxyx: x borrows y from z)\nA. Blgh\n"
      "B. Bhlg\nC. Bglh\nD. Bghl\nAnswer: C\n\n"
      "Which of the following propositions is an immediate (one-step) consequence in PL of the "
      "given premises?\n~E ⊃ ~F\nG ⊃ F\nH ∨ ~E\nH ⊃ I\n~I\nA. E ⊃ F\nB. F ⊃ G\nC. H ⊃ ~E\n"
      "D. ~H\nAnswer:";
  const MmluRequest& r = (*reqs)[8 * 4 + 3];
  EXPECT_EQ(r.doc_id, 8);
  EXPECT_EQ(r.task, "mmlu_formal_logic");
  EXPECT_EQ(r.continuation, " D");
  EXPECT_EQ(r.context, expected);
}

TEST(MmluPrompt, JsonlLineByteForByte) {
  DSV3_REQUIRE_SHARED();
  auto data = LoadMmluSubject(MmluRoot(), "abstract_algebra");
  ASSERT_TRUE(data.ok());
  auto reqs = BuildMmluRequests({*data}, 0);
  ASSERT_TRUE(reqs.ok());
  const std::vector<MmluRequest> one((*reqs).begin() + 4 * 1 + 2, (*reqs).begin() + 4 * 1 + 3);
  EXPECT_EQ(MmluRequestsJsonl(one),
            "{\"task\":\"mmlu_abstract_algebra\",\"doc_id\":1,\"context\":\"The following are "
            "multiple choice questions (with answers) about abstract algebra.\\n\\nLet p = (1, 2, "
            "5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.\\nA. 8\\nB. 2\\nC. 24\\nD. 120\\n"
            "Answer:\",\"continuation\":\" C\"}\n");
}

TEST(MmluPrompt, AllSharedSubjectsWriteRequests) {
  DSV3_REQUIRE_SHARED();
  auto subjects = ListMmluTestSubjects(MmluRoot());
  ASSERT_TRUE(subjects.ok());
  std::vector<MmluSubjectData> all;
  for (const auto& s : *subjects) {
    auto d = LoadMmluSubject(MmluRoot(), s);
    ASSERT_TRUE(d.ok()) << d.status().message();
    all.push_back(std::move(*d));
  }
  auto reqs = BuildMmluRequests(all, 5);
  ASSERT_TRUE(reqs.ok());
  EXPECT_EQ(reqs->size(), 4u * 10601);
  testing::TempDir dir;
  ASSERT_TRUE(WriteMmluRequests(*reqs, dir.Join("req.jsonl")).ok());
  std::ifstream in(dir.Join("req.jsonl"));
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    const MmluRequest& r = (*reqs)[n++];
    ASSERT_EQ(j["context"].get<std::string>(), r.context);
    ASSERT_EQ(j["doc_id"].get<int64_t>(), r.doc_id);
    ASSERT_EQ(j["task"].get<std::string>(), r.task);
  }
  EXPECT_EQ(n, reqs->size());
  EXPECT_FALSE(BuildMmluRequests(all, 6).ok());  // only 5 dev rows per subject
}

}  // namespace
}  // namespace dsv3
