// A port of jieba 0.42.1 precise mode (jieba/__init__.py Tokenizer.cut with HMM=True and
// jieba/finalseg). Python compares tuples in max(), so ties go to the larger index / state
// letter; the same tie rules are kept here because they decide between segmentations.
#include "eval/longbench_jieba.h"

#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "engine/base/file.h"
#include "engine/base/utf8.h"

namespace dsv3 {

namespace {
constexpr double kMinFloat = -3.14e100;  // finalseg's MIN_FLOAT
}  // namespace

std::u32string Utf8Decode(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80             ? 1
              : (c & 0xE0) == 0xC0 ? 2
              : (c & 0xF0) == 0xE0 ? 3
              : (c & 0xF8) == 0xF0 ? 4
                                   : 1;
    if (i + len > s.size()) len = 1;
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string Utf8Encode(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

namespace {

bool IsAsciiAlnum(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool IsHan(char32_t c) { return c >= 0x4E00 && c <= 0x9FD5; }
// re_han_default: [\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-]
bool IsHanDefault(char32_t c) {
  return IsHan(c) || IsAsciiAlnum(c) || c == '+' || c == '#' || c == '&' || c == '.' || c == '_' ||
         c == '%' || c == '-';
}
// Python's \s on str (str.isspace()).
bool IsPySpace(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}
bool IsAsciiDigit(char32_t c) { return c >= '0' && c <= '9'; }

enum State { kB = 0, kE = 1, kM = 2, kS = 3 };  // alphabetical, as Python's tie-break sees them

}  // namespace

struct JiebaSegmenter::Impl {
  std::unordered_map<std::u32string, int64_t> freq;  // words and their prefixes (freq 0)
  double log_total = 0;
  double start[4];
  double trans[4][4];
  std::unordered_map<char32_t, double> emit[4];

  double Freq(std::u32string_view w) const {
    auto it = freq.find(std::u32string(w));
    return it == freq.end() ? -1 : static_cast<double>(it->second);
  }

  // finalseg.viterbi + __cut on one run of Han characters.
  void HmmCut(std::u32string_view s, std::vector<std::string>* out) const {
    static const int kPrev[4][2] = {{kE, kS}, {kB, kM}, {kM, kB}, {kS, kE}};  // PrevStatus
    const size_t n = s.size();
    std::vector<std::array<double, 4>> v(n);
    std::vector<std::array<int, 4>> back(n);
    auto em = [&](int y, char32_t c) {
      auto it = emit[y].find(c);
      return it == emit[y].end() ? kMinFloat : it->second;
    };
    for (int y = 0; y < 4; ++y) v[0][y] = start[y] + em(y, s[0]);
    for (size_t t = 1; t < n; ++t) {
      for (int y = 0; y < 4; ++y) {
        const double e = em(y, s[t]);
        double best = 0;
        int arg = -1;
        for (int y0 : kPrev[y]) {
          const double p = v[t - 1][y0] + trans[y0][y] + e;
          // max() over (prob, state) tuples: equal probs go to the larger state letter.
          if (arg < 0 || p > best || (p == best && y0 > arg)) best = p, arg = y0;
        }
        v[t][y] = best;
        back[t][y] = arg;
      }
    }
    int state = (v[n - 1][kS] >= v[n - 1][kE]) ? kS : kE;
    std::vector<int> path(n);
    for (size_t t = n; t-- > 0;) {
      path[t] = state;
      if (t) state = back[t][state];
    }
    size_t begin = 0, next = 0;
    for (size_t i = 0; i < n; ++i) {
      if (path[i] == kB) {
        begin = i;
      } else if (path[i] == kE) {
        out->push_back(Utf8Encode(s.substr(begin, i + 1 - begin)));
        next = i + 1;
      } else if (path[i] == kS) {
        out->push_back(Utf8Encode(s.substr(i, 1)));
        next = i + 1;
      }
    }
    if (next < n) out->push_back(Utf8Encode(s.substr(next)));
  }

  // finalseg.cut: Han runs through the HMM, the rest split by ([a-zA-Z0-9]+(?:\.\d+)?%?).
  void FinalsegCut(std::u32string_view s, std::vector<std::string>* out) const {
    size_t i = 0;
    while (i < s.size()) {
      if (IsHan(s[i])) {
        size_t j = i;
        while (j < s.size() && IsHan(s[j])) ++j;
        HmmCut(s.substr(i, j - i), out);
        i = j;
        continue;
      }
      size_t j = i;
      while (j < s.size() && !IsHan(s[j])) ++j;
      SkipSplit(s.substr(i, j - i), out);
      i = j;
    }
  }

  static void SkipSplit(std::u32string_view s, std::vector<std::string>* out) {
    size_t i = 0, plain = 0;
    while (i < s.size()) {
      if (!IsAsciiAlnum(s[i])) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < s.size() && IsAsciiAlnum(s[j])) ++j;
      if (j + 1 < s.size() && s[j] == '.' && IsAsciiDigit(s[j + 1])) {
        j += 1;
        while (j < s.size() && IsAsciiDigit(s[j])) ++j;
      }
      if (j < s.size() && s[j] == '%') ++j;
      if (i > plain) out->push_back(Utf8Encode(s.substr(plain, i - plain)));
      out->push_back(Utf8Encode(s.substr(i, j - i)));
      plain = i = j;
    }
    if (plain < s.size()) out->push_back(Utf8Encode(s.substr(plain)));
  }

  // Tokenizer.__cut_DAG on one re_han_default block.
  void DagCut(std::u32string_view s, std::vector<std::string>* out) const {
    const size_t n = s.size();
    std::vector<std::vector<size_t>> dag(n);
    for (size_t k = 0; k < n; ++k) {
      for (size_t i = k; i < n; ++i) {
        const double f = Freq(s.substr(k, i + 1 - k));
        if (f < 0) break;
        if (f > 0) dag[k].push_back(i);
      }
      if (dag[k].empty()) dag[k].push_back(k);
    }
    std::vector<double> score(n + 1, 0.0);
    std::vector<size_t> next(n + 1, 0);
    for (size_t idx = n; idx-- > 0;) {
      bool first = true;
      for (size_t x : dag[idx]) {
        const double f = Freq(s.substr(idx, x + 1 - idx));
        const double p = std::log(f > 0 ? f : 1.0) - log_total + score[x + 1];
        if (first || p > score[idx] || (p == score[idx] && x > next[idx])) {
          score[idx] = p, next[idx] = x;
          first = false;
        }
      }
    }
    std::u32string buf;
    auto flush = [&]() {
      if (buf.empty()) return;
      if (buf.size() == 1) {
        out->push_back(Utf8Encode(buf));
      } else if (Freq(buf) <= 0) {
        FinalsegCut(buf, out);
      } else {
        for (char32_t c : buf) out->push_back(Utf8Encode(std::u32string(1, c)));
      }
      buf.clear();
    };
    for (size_t x = 0; x < n;) {
      const size_t y = next[x] + 1;
      if (y - x == 1) {
        buf.push_back(s[x]);
      } else {
        flush();
        out->push_back(Utf8Encode(s.substr(x, y - x)));
      }
      x = y;
    }
    flush();
  }
};

JiebaSegmenter::JiebaSegmenter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JiebaSegmenter::~JiebaSegmenter() = default;

namespace {

// Parses finalseg/prob_*.py: Python dict literals of 'X' or '\uXXXX' keys and float values.
// Fills `values[state][key]`, where a state dict is `'B': {...}` or a bare float.
Status ParseProbFile(const std::string& path,
                     const std::function<void(int, std::u32string, double)>& put) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  const size_t p = text.find("P=");
  if (p == std::string::npos) return Status::Invalid(path + ": no \"P=\" dict");
  int depth = 0, state = -1;
  size_t i = p + 2;
  auto read_key = [&](std::u32string* key) -> Status {
    ++i;  // opening quote
    std::u32string k;
    while (i < text.size() && text[i] != '\'') {
      if (text[i] == '\\' && i + 5 < text.size() && text[i + 1] == 'u') {
        k.push_back(static_cast<char32_t>(std::stoul(text.substr(i + 2, 4), nullptr, 16)));
        i += 6;
      } else {
        size_t start = i++;
        while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) ++i;
        k += Utf8Decode(text.substr(start, i - start));
      }
    }
    if (i >= text.size()) return Status::Invalid(path + ": unterminated string");
    ++i;
    *key = k;
    return Status::Ok();
  };
  static const std::string kStates = "BEMS";
  while (i < text.size()) {
    const char c = text[i];
    if (c == '{') {
      ++depth, ++i;
      continue;
    }
    if (c == '}') {
      if (--depth == 0) break;
      ++i;
      state = -1;
      continue;
    }
    if (c != '\'') {
      ++i;
      continue;
    }
    std::u32string key;
    RETURN_IF_ERROR(read_key(&key));
    while (i < text.size() && (text[i] == ' ' || text[i] == ':')) ++i;
    if (depth == 1) {
      if (key.size() != 1 || kStates.find(static_cast<char>(key[0])) == std::string::npos)
        return Status::Invalid(path + ": unexpected state key");
      state = static_cast<int>(kStates.find(static_cast<char>(key[0])));
      if (text[i] != '{') {
        char* end;
        put(state, U"", std::strtod(text.c_str() + i, &end));
        i = static_cast<size_t>(end - text.c_str());
      }
      continue;
    }
    char* end;
    const double v = std::strtod(text.c_str() + i, &end);
    if (end == text.c_str() + i) return Status::Invalid(path + ": expected a number");
    i = static_cast<size_t>(end - text.c_str());
    put(state, key, v);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<JiebaSegmenter>> JiebaSegmenter::Load(const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  const std::string dict_path = JoinPath(dir, "dict.txt");
  std::ifstream in(dict_path);
  if (!in) return Status::NotFound(dict_path + ": no such file (jieba's dictionary)");
  std::string line;
  int64_t total = 0, line_no = 0;
  impl->freq.reserve(700000);
  while (std::getline(in, line)) {
    ++line_no;
    // gen_pfdict: line.strip().split(' ')[:2] -> word, int(freq).
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    const size_t sp = line.find(' ');
    if (sp == std::string::npos)
      return Status::Invalid(dict_path + ":" + std::to_string(line_no) + ": no frequency");
    const size_t sp2 = line.find(' ', sp + 1);
    const std::string f =
        line.substr(sp + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp - 1);
    char* end;
    const long long freq = std::strtoll(f.c_str(), &end, 10);
    if (f.empty() || *end)
      return Status::Invalid(dict_path + ":" + std::to_string(line_no) + ": bad frequency");
    const std::u32string word = Utf8Decode(line.substr(0, sp));
    impl->freq[word] = freq;
    total += freq;
    for (size_t ch = 1; ch < word.size(); ++ch) impl->freq.try_emplace(word.substr(0, ch), 0);
  }
  if (total <= 0) return Status::Invalid(dict_path + ": empty dictionary");
  impl->log_total = std::log(static_cast<double>(total));
  for (auto& row : impl->trans)
    for (double& v : row) v = kMinFloat;  // trans_p[y0].get(y, MIN_FLOAT)
  const std::string seg = JoinPath(dir, "finalseg");
  RETURN_IF_ERROR(ParseProbFile(JoinPath(seg, "prob_start.py"),
                                [&](int s, std::u32string, double v) { impl->start[s] = v; }));
  RETURN_IF_ERROR(
      ParseProbFile(JoinPath(seg, "prob_trans.py"), [&](int s, std::u32string k, double v) {
        impl->trans[s][std::string("BEMS").find(static_cast<char>(k[0]))] = v;
      }));
  RETURN_IF_ERROR(
      ParseProbFile(JoinPath(seg, "prob_emit.py"),
                    [&](int s, std::u32string k, double v) { impl->emit[s][k[0]] = v; }));
  if (impl->emit[kB].empty() || impl->emit[kS].empty())
    return Status::Invalid(seg + "/prob_emit.py: no emission probabilities");
  return std::unique_ptr<JiebaSegmenter>(new JiebaSegmenter(std::move(impl)));
}

std::vector<std::string> JiebaSegmenter::Cut(const std::string& text) const {
  const std::u32string s = Utf8Decode(text);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (IsHanDefault(s[i])) {
      while (j < s.size() && IsHanDefault(s[j])) ++j;
      impl_->DagCut(std::u32string_view(s).substr(i, j - i), &out);
    } else {
      // re_skip_default "(\r\n|\s)": whitespace tokens one by one ("\r\n" as one), every
      // other character on its own.
      while (j < s.size() && !IsHanDefault(s[j])) {
        if (s[j] == '\r' && j + 1 < s.size() && s[j + 1] == '\n') {
          out.push_back("\r\n");
          j += 2;
        } else {
          out.push_back(Utf8Encode(std::u32string(1, s[j])));
          ++j;
        }
      }
    }
    i = j;
  }
  return out;
}

std::string FindJiebaDir() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("DSV3_JIEBA_DIR")) dirs.push_back(env);
  dirs.push_back("/usr/lib/python3/dist-packages/jieba");
  dirs.push_back("/usr/local/lib/python3/dist-packages/jieba");
  for (const char* v : {"3.13", "3.12", "3.11", "3.10", "3.9"}) {
    dirs.push_back(std::string("/usr/local/lib/python") + v + "/dist-packages/jieba");
    dirs.push_back(std::string("/usr/local/lib/python") + v + "/site-packages/jieba");
  }
  for (const auto& d : dirs)
    if (FileExists(JoinPath(d, "dict.txt")) && FileExists(JoinPath(d, "finalseg/prob_emit.py")))
      return d;
  return "";
}

StatusOr<const JiebaSegmenter*> DefaultJieba() {
  static std::once_flag once;
  static std::unique_ptr<JiebaSegmenter> seg;
  static Status status;
  std::call_once(once, [] {
    const std::string dir = FindJiebaDir();
    if (dir.empty()) {
      status = Status::NotFound(
          "jieba's data (dict.txt, finalseg/) not found: the Chinese LongBench metrics need "
          "jieba 0.42.1's dictionary to match the official scores. Install it with "
          "`apt-get install python3-jieba` (or pip install jieba==0.42.1) or set DSV3_JIEBA_DIR");
      return;
    }
    auto s = JiebaSegmenter::Load(dir);
    if (!s.ok())
      status = s.status();
    else
      seg = std::move(*s);
  });
  if (!status.ok()) return status;
  return static_cast<const JiebaSegmenter*>(seg.get());
}

}  // namespace dsv3
