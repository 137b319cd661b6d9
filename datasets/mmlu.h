// MMLU in the hendrycks/test layout: <root>/dev/<subject>_dev.csv and
// <root>/test/<subject>_test.csv, no header, rows `question,A,B,C,D,answer` with the answer a
// letter A-D. Also the fixed subject -> category table (STEM, humanities, social sciences,
// other) of hendrycks/test categories.py, which lm-evaluation-harness's mmlu groups use.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct MmluQuestion {
  std::string question;
  std::array<std::string, 4> choices;
  int answer = 0;    // 0..3 for A..D
  int64_t line = 0;  // line in the CSV where the row starts (for messages)
};

enum class MmluCategory { kStem, kHumanities, kSocialSciences, kOther };

// "stem", "humanities", "social_sciences", "other": lm-evaluation-harness's group suffixes
// (mmlu_stem, ...), used as keys in results.
const char* MmluCategoryName(MmluCategory c);

struct MmluSubjectInfo {
  const char* name;
  MmluCategory category;
};
// All 57 subjects, sorted by name.
const std::vector<MmluSubjectInfo>& MmluSubjects();
// The category of a subject, or a usage error naming the unknown subject.
StatusOr<MmluCategory> MmluCategoryOf(const std::string& subject);

// Reads one CSV; every row must have exactly 6 fields and an answer in A-D, else the error
// names file:line and what was found.
StatusOr<std::vector<MmluQuestion>> ReadMmluCsv(const std::string& path);

std::string MmluDevPath(const std::string& root, const std::string& subject);
std::string MmluTestPath(const std::string& root, const std::string& subject);

// The known subjects whose test CSV exists under `root`, sorted. A test CSV whose subject is
// not in the table is an error (a typo or a foreign file would otherwise be silently ignored).
StatusOr<std::vector<std::string>> ListMmluTestSubjects(const std::string& root);

struct MmluSubjectData {
  std::string subject;
  MmluCategory category = MmluCategory::kOther;
  std::vector<MmluQuestion> dev;   // few-shot exemplars, in file order
  std::vector<MmluQuestion> test;  // scored questions; doc_id is the index here
};
// Loads dev and test of one subject; a missing file is an error naming it.
StatusOr<MmluSubjectData> LoadMmluSubject(const std::string& root, const std::string& subject);

// Loads `subjects` in the given order (duplicates are an error), or every subject with a test
// CSV under `root` when the list is empty (the `--subjects` filter of dsv3 eval). All files
// are read and checked before anything is returned, so a bad file fails before model work.
StatusOr<std::vector<MmluSubjectData>> LoadMmluSubjects(const std::string& root,
                                                        const std::vector<std::string>& subjects);

}  // namespace dsv3
