// Chinese word segmentation identical to jieba 0.42.1's `jieba.cut(s, cut_all=False)` (precise
// mode, HMM on), which LongBench's Chinese metrics (qa_f1_zh, rouge_zh) run on predictions and
// references. Scores only match the official ones with the same segmenter and the same data,
// so this is a line-for-line port of jieba's algorithm that reads jieba's own files: the
// prefix dictionary `dict.txt` and the HMM tables `finalseg/prob_{start,trans,emit}.py`
// (Debian/Ubuntu: `apt-get install python3-jieba`; or `pip install jieba==0.42.1`).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

class JiebaSegmenter {
 public:
  ~JiebaSegmenter();
  // `dir` holds dict.txt and finalseg/ (the installed `jieba` Python package directory).
  static StatusOr<std::unique_ptr<JiebaSegmenter>> Load(const std::string& dir);
  // The tokens of jieba.cut(text) in order (whitespace and punctuation are tokens too).
  std::vector<std::string> Cut(const std::string& text) const;

  struct Impl;

 private:
  explicit JiebaSegmenter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Where jieba's data is looked for: $DSV3_JIEBA_DIR, then the Debian python3-jieba and pip
// install locations. "" when none has dict.txt.
std::string FindJiebaDir();

// UTF-8 <-> code points (Python str indexing is by code point, and so are jieba and the
// character-level metrics). Invalid bytes decode as themselves, one per code point.
std::u32string Utf8Decode(const std::string& s);
std::string Utf8Encode(std::u32string_view s);

// Shared lazily-loaded instance from FindJiebaDir(); an error saying how to install the data
// when it is absent.
StatusOr<const JiebaSegmenter*> DefaultJieba();

}  // namespace dsv3
