// LongBench v1 metrics and the official scorer (THUDM/LongBench LongBench/metrics.py and
// eval.py at 2e00731f, with rouge 1.0.1, fuzzywuzzy 0.18.0 and jieba 0.42.1), reproduced with
// their quirks so that scores are comparable with published LongBench numbers. Each quirk is
// described in ../shared/datasets/longbench/METRICS.md and tested against the official
// outputs in metric_cases.jsonl / scorer_cases.jsonl.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/status.h"
#include "eval/longbench_jieba.h"

namespace dsv3 {

// English QA F1 on normalize_answer tokens (lower, ASCII punctuation out, articles out).
double LongBenchQaF1(const std::string& prediction, const std::string& ground_truth);
// Chinese QA F1 on jieba tokens, each normalized with normalize_zh_answer, empties dropped.
double LongBenchQaF1Zh(const JiebaSegmenter& jieba, const std::string& prediction,
                       const std::string& ground_truth);
// rouge 1.0.1's summary-level "rouge-l" "f" (see METRICS.md: '.'-split sentences, distinct
// words, union LCS with its tie rule, 1e-8 in the denominator); 0.0 wherever the package
// raises (no sentences, or its recursive LCS trace exceeding Python's recursion limit).
double LongBenchRouge(const std::string& prediction, const std::string& ground_truth);
double LongBenchRougeZh(const JiebaSegmenter& jieba, const std::string& prediction,
                        const std::string& ground_truth);
double LongBenchClassification(const std::string& prediction, const std::string& ground_truth,
                               const std::vector<std::string>& all_classes);
// Paragraph-number retrieval; `zh` selects the pattern 段落(\d+) instead of Paragraph (\d+).
// A reference without the pattern scores 0 (the official code raises IndexError there).
double LongBenchRetrieval(const std::string& prediction, const std::string& ground_truth, bool zh);
double LongBenchCount(const std::string& prediction, const std::string& ground_truth);

// fuzzywuzzy's fuzz.ratio backends: python-Levenshtein (indel ratio) when installed, else
// difflib.SequenceMatcher. The official numbers were made with python-Levenshtein.
enum class FuzzBackend { kLevenshtein, kDifflib };
double LongBenchCodeSim(const std::string& prediction, const std::string& ground_truth,
                        FuzzBackend backend = FuzzBackend::kLevenshtein);

// The metric of one of the 21 datasets (dataset2metric), or "" when unknown.
std::string LongBenchMetricName(const std::string& dataset);
// Runs a metric by its metrics.py name ("qa_f1_score", "rouge_zh_score", ...). Chinese metrics
// need `jieba` (an error if null); an unknown name is an error.
StatusOr<double> LongBenchMetric(const std::string& metric, const std::string& prediction,
                                 const std::string& ground_truth,
                                 const std::vector<std::string>& all_classes,
                                 const JiebaSegmenter* jieba,
                                 FuzzBackend backend = FuzzBackend::kLevenshtein);

// Datasets whose prediction is cut to its first line before scoring (trec, triviaqa, samsum,
// lsht): leading '\n' removed, then everything from the next '\n' on dropped.
bool LongBenchFirstLineOnly(const std::string& dataset);

struct LongBenchSample {
  std::string prediction;
  std::vector<std::string> answers;
  int64_t length = 0;  // for LongBench-E buckets
};

// eval.py scorer(): per sample the max of the metric over the answers (starting from 0), the
// dataset score round(100 * mean, 2). As in eval.py, one all_classes serves the whole dataset
// (eval.py keeps the last record's). `sample_scores`, when given, receives the raw per-sample
// scores (0..1) for the per-sample log.
StatusOr<double> LongBenchScore(const std::string& dataset,
                                const std::vector<LongBenchSample>& samples,
                                const std::vector<std::string>& all_classes,
                                const JiebaSegmenter* jieba,
                                std::vector<double>* sample_scores = nullptr);
// eval.py scorer_e(): the same per-sample scores bucketed by length into "0-4k" (< 4000),
// "4-8k" (< 8000) and "8k+", each round(100 * np.mean, 2); an empty bucket is NaN as in numpy.
StatusOr<std::map<std::string, double>> LongBenchScoreE(const std::string& dataset,
                                                        const std::vector<LongBenchSample>& samples,
                                                        const std::vector<std::string>& all_classes,
                                                        const JiebaSegmenter* jieba);

// Python's round(x, 2) (correctly rounded: the decimal nearest the exact binary value, ties
// to even), used for the ×100 dataset scores.
double PyRound2(double x);

}  // namespace dsv3
