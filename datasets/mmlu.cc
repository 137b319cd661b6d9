// MMLU CSV rows and the subject table (hendrycks/test categories.py; the same mapping is in
// ../shared/datasets/mmlu/subjects.json, which a test checks against this table).
#include "datasets/mmlu.h"

#include <dirent.h>

#include <algorithm>

#include "datasets/csv.h"
#include "engine/base/file.h"

namespace dsv3 {

const char* MmluCategoryName(MmluCategory c) {
  switch (c) {
    case MmluCategory::kStem:
      return "stem";
    case MmluCategory::kHumanities:
      return "humanities";
    case MmluCategory::kSocialSciences:
      return "social_sciences";
    case MmluCategory::kOther:
      return "other";
  }
  return "other";
}

const std::vector<MmluSubjectInfo>& MmluSubjects() {
  static const std::vector<MmluSubjectInfo> kSubjects = {
      {"abstract_algebra", MmluCategory::kStem},
      {"anatomy", MmluCategory::kOther},
      {"astronomy", MmluCategory::kStem},
      {"business_ethics", MmluCategory::kOther},
      {"clinical_knowledge", MmluCategory::kOther},
      {"college_biology", MmluCategory::kStem},
      {"college_chemistry", MmluCategory::kStem},
      {"college_computer_science", MmluCategory::kStem},
      {"college_mathematics", MmluCategory::kStem},
      {"college_medicine", MmluCategory::kOther},
      {"college_physics", MmluCategory::kStem},
      {"computer_security", MmluCategory::kStem},
      {"conceptual_physics", MmluCategory::kStem},
      {"econometrics", MmluCategory::kSocialSciences},
      {"electrical_engineering", MmluCategory::kStem},
      {"elementary_mathematics", MmluCategory::kStem},
      {"formal_logic", MmluCategory::kHumanities},
      {"global_facts", MmluCategory::kOther},
      {"high_school_biology", MmluCategory::kStem},
      {"high_school_chemistry", MmluCategory::kStem},
      {"high_school_computer_science", MmluCategory::kStem},
      {"high_school_european_history", MmluCategory::kHumanities},
      {"high_school_geography", MmluCategory::kSocialSciences},
      {"high_school_government_and_politics", MmluCategory::kSocialSciences},
      {"high_school_macroeconomics", MmluCategory::kSocialSciences},
      {"high_school_mathematics", MmluCategory::kStem},
      {"high_school_microeconomics", MmluCategory::kSocialSciences},
      {"high_school_physics", MmluCategory::kStem},
      {"high_school_psychology", MmluCategory::kSocialSciences},
      {"high_school_statistics", MmluCategory::kStem},
      {"high_school_us_history", MmluCategory::kHumanities},
      {"high_school_world_history", MmluCategory::kHumanities},
      {"human_aging", MmluCategory::kOther},
      {"human_sexuality", MmluCategory::kSocialSciences},
      {"international_law", MmluCategory::kHumanities},
      {"jurisprudence", MmluCategory::kHumanities},
      {"logical_fallacies", MmluCategory::kHumanities},
      {"machine_learning", MmluCategory::kStem},
      {"management", MmluCategory::kOther},
      {"marketing", MmluCategory::kOther},
      {"medical_genetics", MmluCategory::kOther},
      {"miscellaneous", MmluCategory::kOther},
      {"moral_disputes", MmluCategory::kHumanities},
      {"moral_scenarios", MmluCategory::kHumanities},
      {"nutrition", MmluCategory::kOther},
      {"philosophy", MmluCategory::kHumanities},
      {"prehistory", MmluCategory::kHumanities},
      {"professional_accounting", MmluCategory::kOther},
      {"professional_law", MmluCategory::kHumanities},
      {"professional_medicine", MmluCategory::kOther},
      {"professional_psychology", MmluCategory::kSocialSciences},
      {"public_relations", MmluCategory::kSocialSciences},
      {"security_studies", MmluCategory::kSocialSciences},
      {"sociology", MmluCategory::kSocialSciences},
      {"us_foreign_policy", MmluCategory::kSocialSciences},
      {"virology", MmluCategory::kOther},
      {"world_religions", MmluCategory::kHumanities},
  };
  return kSubjects;
}

StatusOr<MmluCategory> MmluCategoryOf(const std::string& subject) {
  for (const auto& s : MmluSubjects())
    if (subject == s.name) return s.category;
  return Status::Invalid("unknown MMLU subject \"" + subject + "\" (expected one of the 57 " +
                         "hendrycks subjects, e.g. abstract_algebra)");
}

StatusOr<std::vector<MmluQuestion>> ReadMmluCsv(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<CsvRow> rows, ReadCsvFile(path));
  std::vector<MmluQuestion> out;
  out.reserve(rows.size());
  for (auto& row : rows) {
    const std::string where = path + ":" + std::to_string(row.line) + ": ";
    if (row.fields.size() != 6) {
      return Status::Invalid(where + "row has " + std::to_string(row.fields.size()) +
                             " fields, expected 6 (question,A,B,C,D,answer)");
    }
    const std::string& a = row.fields[5];
    if (a.size() != 1 || a[0] < 'A' || a[0] > 'D')
      return Status::Invalid(where + "answer is \"" + a + "\", expected one of A, B, C, D");
    MmluQuestion q;
    q.question = std::move(row.fields[0]);
    for (int k = 0; k < 4; ++k) q.choices[k] = std::move(row.fields[1 + k]);
    q.answer = a[0] - 'A';
    q.line = row.line;
    out.push_back(std::move(q));
  }
  return out;
}

std::string MmluDevPath(const std::string& root, const std::string& subject) {
  return JoinPath(JoinPath(root, "dev"), subject + "_dev.csv");
}
std::string MmluTestPath(const std::string& root, const std::string& subject) {
  return JoinPath(JoinPath(root, "test"), subject + "_test.csv");
}

StatusOr<std::vector<std::string>> ListMmluTestSubjects(const std::string& root) {
  const std::string dir = JoinPath(root, "test");
  DIR* d = opendir(dir.c_str());
  if (!d) return Status::NotFound(dir + ": no such directory (expected the hendrycks MMLU layout)");
  std::vector<std::string> names;
  const std::string suffix = "_test.csv";
  while (dirent* e = readdir(d)) {
    std::string f = e->d_name;
    if (f.size() <= suffix.size() || f.compare(f.size() - suffix.size(), suffix.size(), suffix))
      continue;
    names.push_back(f.substr(0, f.size() - suffix.size()));
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    Status s = MmluCategoryOf(n).status();
    if (!s.ok()) return s.WithPrefix(MmluTestPath(root, n) + ": ");
  }
  return names;
}

StatusOr<MmluSubjectData> LoadMmluSubject(const std::string& root, const std::string& subject) {
  MmluSubjectData data;
  data.subject = subject;
  ASSIGN_OR_RETURN(data.category, MmluCategoryOf(subject));
  ASSIGN_OR_RETURN(data.dev, ReadMmluCsv(MmluDevPath(root, subject)));
  ASSIGN_OR_RETURN(data.test, ReadMmluCsv(MmluTestPath(root, subject)));
  return data;
}

StatusOr<std::vector<MmluSubjectData>> LoadMmluSubjects(const std::string& root,
                                                        const std::vector<std::string>& subjects) {
  std::vector<std::string> names = subjects;
  if (names.empty()) {
    ASSIGN_OR_RETURN(names, ListMmluTestSubjects(root));
    if (names.empty()) return Status::NotFound(JoinPath(root, "test") + ": no *_test.csv files");
  }
  std::vector<MmluSubjectData> out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (std::find(names.begin(), names.begin() + i, names[i]) != names.begin() + i)
      return Status::Invalid("MMLU subject \"" + names[i] + "\" is listed twice");
    ASSIGN_OR_RETURN(MmluSubjectData d, LoadMmluSubject(root, names[i]));
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace dsv3
