// lm-evaluation-harness MMLU (tasks/mmlu/default/_default_template_yaml and the per-subject
// YAMLs), reproduced exactly:
//   description: "The following are multiple choice questions (with answers) about
//                 {subject with '_' -> ' '}.\n\n"
//   doc_to_text: "{{question.strip()}}\nA. {{choices[0]}}\nB. ...\nD. {{choices[3]}}\nAnswer:"
//     - only the question is stripped (Python str.strip(): Unicode whitespace, both ends);
//       the choices go in verbatim, not stripped, as the template has no .strip() on them;
//   doc_to_choice: ["A","B","C","D"], target_delimiter " ", fewshot_delimiter "\n\n";
//   fewshot_split: dev with sampler first_n, i.e. the first K dev rows in file order.
// lm-eval builds description + join(shot_i + "\n\n") + doc_to_text(test), each shot being
// doc_to_text + " " + letter; the request's continuation is " " + letter.
#include "eval/mmlu_prompt.h"

#include <nlohmann/json.hpp>

#include "engine/base/file.h"

namespace dsv3 {

namespace {

// Length in bytes of a Python-whitespace code point starting at s[i], or 0. Python's
// str.isspace(): \t\n\v\f\r, \x1c-\x1f, space, U+0085, U+00A0, U+1680, U+2000-U+200A,
// U+2028, U+2029, U+202F, U+205F, U+3000.
size_t WhitespaceAt(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  if (c == 0xC2 && i + 1 < s.size() && (b(i + 1) == 0x85 || b(i + 1) == 0xA0)) return 2;
  if (i + 2 >= s.size()) return 0;
  const uint32_t cp = ((c & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
  if ((c & 0xF0) != 0xE0) return 0;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
      cp == 0x202F || cp == 0x205F || cp == 0x3000)
    return 3;
  return 0;
}

// Python's str.strip() with no argument, on UTF-8.
std::string PyStrip(const std::string& s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t w = WhitespaceAt(s, begin);
    if (!w) break;
    begin += w;
  }
  // Trailing: walk back to each code point start and test it.
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (WhitespaceAt(s, start) != end - start) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

std::string Description(const std::string& subject) {
  std::string name = subject;
  for (char& c : name)
    if (c == '_') c = ' ';
  return "The following are multiple choice questions (with answers) about " + name + ".\n\n";
}

}  // namespace

std::string MmluRenderQuestion(const MmluQuestion& q) {
  std::string out = PyStrip(q.question);
  for (int k = 0; k < 4; ++k) {
    out += '\n';
    out += static_cast<char>('A' + k);
    out += ". ";
    out += q.choices[k];
  }
  out += "\nAnswer:";
  return out;
}

std::string MmluContext(const std::string& subject, const std::vector<MmluQuestion>& dev,
                        int num_fewshot, const MmluQuestion& test) {
  std::string ctx = Description(subject);
  for (int i = 0; i < num_fewshot && i < static_cast<int>(dev.size()); ++i) {
    ctx += MmluRenderQuestion(dev[i]);
    ctx += kMmluContinuations[dev[i].answer];
    ctx += "\n\n";
  }
  ctx += MmluRenderQuestion(test);
  return ctx;
}

StatusOr<std::vector<MmluRequest>> BuildMmluRequests(const std::vector<MmluSubjectData>& subjects,
                                                     int num_fewshot) {
  std::vector<MmluRequest> out;
  for (const auto& s : subjects) {
    if (num_fewshot < 0 || num_fewshot > static_cast<int>(s.dev.size()))
      return Status::Invalid("--num-fewshot " + std::to_string(num_fewshot) + " for mmlu_" +
                             s.subject + ": the dev split has " + std::to_string(s.dev.size()) +
                             " rows");
    for (size_t d = 0; d < s.test.size(); ++d) {
      const std::string ctx = MmluContext(s.subject, s.dev, num_fewshot, s.test[d]);
      for (int c = 0; c < 4; ++c) {
        MmluRequest r;
        r.task = "mmlu_" + s.subject;
        r.doc_id = static_cast<int64_t>(d);
        r.context = ctx;
        r.continuation = kMmluContinuations[c];
        r.choice = c;
        r.gold = s.test[d].answer;
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

std::string MmluRequestsJsonl(const std::vector<MmluRequest>& requests) {
  std::string out;
  for (const auto& r : requests) {
    // ordered_json keeps the documented key order; dump(-1, ' ', false) leaves UTF-8 as is.
    nlohmann::ordered_json j;
    j["task"] = r.task;
    j["doc_id"] = r.doc_id;
    j["context"] = r.context;
    j["continuation"] = r.continuation;
    out += j.dump();
    out += '\n';
  }
  return out;
}

Status WriteMmluRequests(const std::vector<MmluRequest>& requests, const std::string& path) {
  return WriteFileAtomic(path, MmluRequestsJsonl(requests));
}

}  // namespace dsv3
