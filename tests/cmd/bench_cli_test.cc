// dsv3 bench through the CLI on a tiny random checkpoint: the table and the JSON carry every
// test asked for, with rooflines and the forward's time by stage, and bad flags are usage
// errors (exit 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/kernels/cpu/cpu_features.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

class BenchCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = testing::RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out",
                               dir_.path() + "/m"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  testing::TempDir dir_;
};

// The read probe's buffer (here 256 MiB, far above tiny-v3's few MB and the process itself) is
// freed after each probe and left out of the peak RSS (VmHWM lowered after each probe): before,
// it was the peak of every small model. Linux only (/proc/self/clear_refs).
TEST_F(BenchCliTest, PeakRssLeavesOutTheReadProbe) {
  if (!std::ofstream("/proc/self/clear_refs")) GTEST_SKIP() << "/proc/self/clear_refs cannot be written here";
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "8", "--gen-len", "4",
                             "--threads", "1", "--repetitions", "1", "--probe-mib", "256", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  for (const auto& row : j) {
    EXPECT_GT(row["peak_rss_bytes"].get<double>(), 0.0) << row.dump();
    EXPECT_LT(row["peak_rss_bytes"].get<double>(), 200.0 * (1 << 20)) << row.dump();
  }
}

TEST_F(BenchCliTest, JsonHasPrefillAndDecodeRowsWithRooflines) {
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "8", "--gen-len", "4",
                             "--depth", "0,6", "--threads", "1,2", "--repetitions", "2", "--probe-mib", "8", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 8u);  // {pp8, tg4} x 2 depths x 2 thread counts
  EXPECT_EQ(j[0]["test"], "pp8");
  EXPECT_EQ(j[1]["test"], "tg4");
  EXPECT_EQ(j[4]["test"], "pp8 @ d6");
  EXPECT_NE(j[0]["kernels"].get<std::string>().find("act=int8"), std::string::npos) << j[0].dump();
  for (const auto& row : j) {
    EXPECT_GT(row["median_ts"].get<double>(), 0.0) << row.dump();
    EXPECT_LE(row["min_ts"].get<double>(), row["max_ts"].get<double>());
    // llama-bench's fields with its meanings: avg_ts the mean of samples_ts, one sample a
    // repetition, samples_ns each run's time for its tokens, n_prompt and n_gen both present.
    const auto samples = row["samples_ts"].get<std::vector<double>>();
    const auto samples_ns = row["samples_ns"].get<std::vector<int64_t>>();
    ASSERT_EQ(samples.size(), 2u) << row.dump();
    ASSERT_EQ(samples_ns.size(), 2u) << row.dump();
    EXPECT_DOUBLE_EQ(row["avg_ts"].get<double>(), samples[0] / 2 + samples[1] / 2) << row.dump();
    EXPECT_NEAR(row["stddev_ts"].get<double>(), std::abs(samples[0] - samples[1]) / std::sqrt(2.0), 1e-6 * samples[0]);
    const bool decode = row["test"].get<std::string>().rfind("tg", 0) == 0;
    EXPECT_EQ(row["n_prompt"].get<int64_t>(), decode ? 0 : 8) << row.dump();
    EXPECT_EQ(row["n_gen"].get<int64_t>(), decode ? 4 : 0) << row.dump();
    EXPECT_EQ(row["n_threads"], row["threads"]);
    EXPECT_EQ(row["model_size"], row["model_size_bytes"]);
    EXPECT_GT(row["model_n_params"].get<int64_t>(), 0);
    // pp8: 8 tokens a run; tg4: the 3 decode steps after the prefill's token.
    const double run_tokens = decode ? 3 : 8;
    for (size_t k = 0; k < 2; ++k) EXPECT_NEAR(samples_ns[k] * samples[k] / 1e9, run_tokens, 1e-3) << row.dump();
    EXPECT_GT(row["peak_rss_bytes"].get<double>(), 0.0);
    // The checkpoint's pages read, and the share of them mapped with 2 MiB pages (none where
    // the page cache or the file system keeps 4 KiB pages): the run read weights, never more
    // than the files hold.
    const double mapped = row["weights_mapped_bytes"].get<double>(), huge = row["weights_2mib_page_bytes"].get<double>();
    EXPECT_GT(mapped, 0.0) << row.dump();
    EXPECT_LE(mapped, row["model_size_bytes"].get<double>() + 4096) << row.dump();
    EXPECT_GE(huge, 0.0) << row.dump();
    EXPECT_LE(huge, mapped) << row.dump();
    // The tensors' bytes, all on 64-byte lines: dsv3 init wrote the file, and every tiny-v3
    // tensor's size is whole lines.
    const double tensors = row["weights_tensor_bytes"].get<double>();
    EXPECT_GT(tensors, 0.0) << row.dump();
    EXPECT_LE(tensors, row["model_size_bytes"].get<double>()) << row.dump();
    EXPECT_EQ(row["weights_line_aligned_bytes"].get<double>(), tensors) << row.dump();
    EXPECT_GT(row["read_bandwidth_bytes_per_s"].get<double>(), 0.0);
    // The roofline is the slower floor: bytes at the read bandwidth, FLOPs at the FMA peak
    // (tiny-v3's BF16 weights take no int8 activations).
    const double bytes = row["bytes_per_token"].get<double>(), flops = row["flops_per_token"].get<double>();
    const double int8_flops = row["int8_flops_per_token"].get<double>();
    EXPECT_GT(bytes, 0.0) << row.dump();
    EXPECT_GT(flops, 0.0) << row.dump();
    EXPECT_EQ(int8_flops, 0.0) << row.dump();
    const double memory_s = bytes / row["read_bandwidth_bytes_per_s"].get<double>();
    const double compute_s =
        (flops - int8_flops) / row["peak_flops"].get<double>() + int8_flops / row["peak_int8_ops"].get<double>();
    EXPECT_NEAR(row["roofline_ts"].get<double>() * std::max(memory_s, compute_s), 1.0, 1e-9) << row.dump();
    EXPECT_EQ(row["bound"], compute_s > memory_s ? "compute" : "memory") << row.dump();
    EXPECT_EQ(row["bf16_flops_per_token"].get<double>(), 0.0) << "bf16 only when asked: " << row.dump();
    // The forward's time per token by stage: every stage of tiny-v3 (a dense layer, then MoE
    // ones) ran, and together they fit in the test's own time per token (the slowest
    // repetition's): prefill stages count prefill steps only, decode stages decode steps only.
    const auto& stages = row["stage_seconds_per_token"];
    double sum = 0;
    for (const char* stage : {"attention", "moe", "dense_mlp", "lm_head", "other"}) {
      ASSERT_TRUE(stages.contains(stage)) << row.dump();
      EXPECT_GE(stages[stage].get<double>(), 0.0) << stage << " " << row.dump();
      sum += stages[stage].get<double>();
    }
    for (const char* stage : {"attention", "moe", "dense_mlp", "lm_head"}) EXPECT_GT(stages[stage].get<double>(), 0.0) << stage;
    EXPECT_LE(sum, 1.0 / row["min_ts"].get<double>()) << row.dump();
  }
}

// tgN decodes from the test's depth, as llama-bench's tgN does, not after ppN's prompt: its
// FLOPs per token, counted as they run (attention's over the cached positions it attends to),
// are the same whether the run also had a 64-token prefill test or none, and rise with the depth.
TEST_F(BenchCliTest, DecodeRowsStartFromTheDepthNotThePrompt) {
  const auto rows = [&](const std::string& prompt_len) {
    auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", prompt_len, "--gen-len",
                               "8", "--depth", "0,32", "--threads", "1", "--repetitions", "1", "--probe-mib", "8",
                               "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, nlohmann::json> by_test;
    for (const auto& row : nlohmann::json::parse(r.out)) by_test[row["test"].get<std::string>()] = row;
    return by_test;
  };
  auto with_prompt = rows("64"), without = rows("0");
  ASSERT_TRUE(with_prompt.count("pp64") && with_prompt.count("tg8") && with_prompt.count("tg8 @ d32"));
  ASSERT_TRUE(without.count("tg8") && without.count("tg8 @ d32") && !without.count("pp64"));
  for (const char* test : {"tg8", "tg8 @ d32"}) {
    EXPECT_EQ(with_prompt[test]["flops_per_token"].get<double>(), without[test]["flops_per_token"].get<double>())
        << test << ": " << with_prompt[test].dump() << "\n" << without[test].dump();
    EXPECT_EQ(with_prompt[test]["n_depth"], without[test]["n_depth"]);
  }
  EXPECT_GT(without["tg8 @ d32"]["flops_per_token"].get<double>(), without["tg8"]["flops_per_token"].get<double>());
}

// --kv-cache-dtype bf16: a cache of half the bytes, named in the JSON as llama-bench names its
// cache types (type_k, type_v) and in the table's kernels column; a decode row's bytes per token
// count the cache it reads at two bytes a value, not four (tiny-v3 at depth 32: 3 layers x
// (32 + 8) values x (32 + 1 + 4 / 2) positions, the mean context of tg4), the weights' bytes unchanged.
TEST_F(BenchCliTest, Bf16KvCacheHalvesTheCacheAndItsBytesPerToken) {
  const auto rows = [&](const std::string& kv) {
    auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "0", "--gen-len", "4",
                               "--depth", "32", "--threads", "1", "--repetitions", "1", "--probe-mib", "8", "--json",
                               "--kv-cache-dtype", kv});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const nlohmann::json f32 = rows("f32"), bf16 = rows("bf16");
  ASSERT_EQ(f32.size(), 1u);
  ASSERT_EQ(bf16.size(), 1u);
  EXPECT_EQ(f32[0]["type_k"], "f32");
  EXPECT_EQ(bf16[0]["type_k"], "bf16");
  EXPECT_EQ(bf16[0]["type_v"], "bf16");
  EXPECT_EQ(f32[0]["kernels"].get<std::string>().find("kv="), std::string::npos);
  EXPECT_NE(bf16[0]["kernels"].get<std::string>().find(" kv=bf16"), std::string::npos);
  EXPECT_EQ(2 * bf16[0]["kv_cache_bytes"].get<int64_t>(), f32[0]["kv_cache_bytes"].get<int64_t>());
  const double saved = 3 * (32 + 8) * (32 + 1 + 4 / 2.0) * 2;
  EXPECT_DOUBLE_EQ(f32[0]["bytes_per_token"].get<double>() - bf16[0]["bytes_per_token"].get<double>(), saved)
      << f32[0].dump() << "\n" << bf16[0].dump();
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--kv-cache-dtype", "f16"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--kv-cache-dtype must be f32 or bf16, got \"f16\""), std::string::npos) << r.err;
  r = testing::RunDsv3({"generate", "--model-path", dir_.path() + "/m", "--ids", "1", "--kv-cache-dtype", "fp8"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--kv-cache-dtype must be f32 or bf16"), std::string::npos) << r.err;
}

// INT4 weights take int8 activations in decode steps: the decode rows report that share of
// their FLOPs, which counts against the int8 peak (at batch 16 it is what makes the decode step
// compute-bound); prefill stays float32.
TEST_F(BenchCliTest, Int8ActivationFlopsAreReportedAndCounted) {
  auto q = testing::RunDsv3({"quantize", "--model-path", dir_.path() + "/m", "--out", dir_.path() + "/q",
                             "--format", "int4", "--group-size", "32"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/q", "--prompt-len", "4", "--gen-len", "4",
                             "--threads", "1", "--batch-size", "1,16", "--repetitions", "1", "--probe-mib", "8",
                             "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 4u);  // pp4, tg4, pp4 x16, tg4 x16
  EXPECT_EQ(j[0]["int8_flops_per_token"].get<double>(), 0.0) << j[0].dump();
  for (const auto& row : j) {
    const double flops = row["flops_per_token"].get<double>(), int8_flops = row["int8_flops_per_token"].get<double>();
    const double memory_s = row["bytes_per_token"].get<double>() / row["read_bandwidth_bytes_per_s"].get<double>();
    const double compute_s =
        (flops - int8_flops) / row["peak_flops"].get<double>() + int8_flops / row["peak_int8_ops"].get<double>();
    EXPECT_NEAR(row["roofline_ts"].get<double>() * std::max(memory_s, compute_s), 1.0, 1e-9) << row.dump();
    if (row["test"].get<std::string>().rfind("tg", 0) == 0) {
      EXPECT_GT(int8_flops, 0.0) << row.dump();
      EXPECT_LT(int8_flops, flops) << "attention's products stay float32: " << row.dump();
    }
    // The int8 peak is the kernel family's: a vpdpbusd loop's with AVX-512 VNNI (64 products
    // an instruction, far above eight-lane FMAs), a vpmaddubsw loop's with AVX2 (32 products an
    // instruction: twice the FMAs' where it issues once a cycle, as on Haswell, four times on
    // Zen 3), the FMA peak itself for the reference family.
    const std::string kernels = row["kernels"].get<std::string>();
    if (kernels.rfind("avx512", 0) == 0) {
      EXPECT_GT(row["peak_int8_ops"].get<double>(), 2 * row["peak_flops"].get<double>()) << row.dump();
    } else if (kernels.rfind("avx2", 0) == 0) {
      EXPECT_GT(row["peak_int8_ops"].get<double>(), 1.5 * row["peak_flops"].get<double>()) << row.dump();
    } else {
      EXPECT_EQ(row["peak_int8_ops"].get<double>(), row["peak_flops"].get<double>()) << row.dump();
    }
  }
  if (!GetCpuFeatures().HasAvx512VnniSet()) return;
  r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/q", "--prompt-len", "0", "--gen-len", "2",
                        "--threads", "1", "--repetitions", "1", "--probe-mib", "8", "--kernels", "avx2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["kernels"], "avx2 act=int8");
  EXPECT_GT(j[0]["peak_int8_ops"].get<double>(), 1.5 * j[0]["peak_flops"].get<double>()) << j[0].dump();
}

// --activations bf16 (tiny-v3's weights are BF16): every step's products count as bf16 FLOPs,
// against a vdpbf16ps loop's peak (two products and two additions a lane; above the FMA peak
// on Zen 5, below it on a Sapphire or Emerald Rapids Xeon: machine_probe_test says why), which
// the roofline's compute time uses. CPUs without AVX-512 BF16 refuse the option as a usage
// error that says why.
TEST_F(BenchCliTest, Bf16ActivationFlopsCountAgainstTheBf16Peak) {
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "4", "--gen-len", "3",
                             "--threads", "1", "--repetitions", "1", "--probe-mib", "8", "--activations", "bf16",
                             "--json"});
  if (!GetCpuFeatures().HasAvx512Bf16Set()) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("AVX-512 BF16"), std::string::npos) << r.err;
    GTEST_SKIP() << "no AVX-512 BF16 here (" << GetCpuFeatures().ToString() << ")";
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  for (const auto& row : j) {
    EXPECT_EQ(row["kernels"], "avx512 act=bf16") << row.dump();
    const double flops = row["flops_per_token"].get<double>(), bf16 = row["bf16_flops_per_token"].get<double>();
    EXPECT_GT(bf16, 0.0) << row.dump();
    EXPECT_LT(bf16, flops) << "attention's products stay float32: " << row.dump();
    EXPECT_EQ(row["int8_flops_per_token"].get<double>(), 0.0) << row.dump();
    EXPECT_GT(row["peak_bf16_flops"].get<double>(), 0.0) << row.dump();
    const double memory_s = row["bytes_per_token"].get<double>() / row["read_bandwidth_bytes_per_s"].get<double>();
    const double compute_s = (flops - bf16) / row["peak_flops"].get<double>() + bf16 / row["peak_bf16_flops"].get<double>();
    EXPECT_NEAR(row["roofline_ts"].get<double>() * std::max(memory_s, compute_s), 1.0, 1e-9) << row.dump();
  }
  // Over a bf16 cache decode's attention takes bf16 queries and probabilities too: the same
  // work, more of it bf16 (prefill widens the cache's rows: float32 as before).
  r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "4", "--gen-len", "3",
                        "--threads", "1", "--repetitions", "1", "--probe-mib", "8", "--activations", "bf16",
                        "--kv-cache-dtype", "bf16", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto cached = nlohmann::json::parse(r.out);
  ASSERT_EQ(cached.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(cached[i]["flops_per_token"], j[i]["flops_per_token"]) << cached[i].dump();
    if (cached[i]["test"] == "tg3") {
      EXPECT_GT(cached[i]["bf16_flops_per_token"].get<double>(), j[i]["bf16_flops_per_token"].get<double>()) << cached[i].dump();
    } else {
      EXPECT_EQ(cached[i]["bf16_flops_per_token"], j[i]["bf16_flops_per_token"]) << cached[i].dump();
    }
  }
}

// Several sequences prefilled and decoded together (an eval's generation batch): t/s counts all
// of their tokens, and a decode step reads each weight it touches once for all of them, so the
// bytes per token fall; at depth every sequence has the context in its own cache slot.
TEST_F(BenchCliTest, BatchedSequencesShareEachStepsWeights) {
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "4", "--gen-len", "4",
                             "--depth", "0,6", "--threads", "1", "--batch-size", "1,3", "--repetitions", "1",
                             "--probe-mib", "8", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 8u);  // {pp4, tg4} x 2 batch sizes x 2 depths
  EXPECT_EQ(j[0]["test"], "pp4");
  EXPECT_EQ(j[1]["test"], "tg4");
  EXPECT_EQ(j[2]["test"], "pp4 x3");
  EXPECT_EQ(j[3]["test"], "tg4 x3");
  EXPECT_EQ(j[7]["test"], "tg4 x3 @ d6");
  EXPECT_EQ(j[1]["n_batch"], 1);
  EXPECT_EQ(j[3]["n_batch"], 3);
  for (const auto& row : j) EXPECT_GT(row["median_ts"].get<double>(), 0.0) << row.dump();
  EXPECT_LT(j[3]["bytes_per_token"].get<double>(), j[1]["bytes_per_token"].get<double>());
  EXPECT_LT(j[7]["bytes_per_token"].get<double>(), j[5]["bytes_per_token"].get<double>());
}

TEST_F(BenchCliTest, TableAndUsageErrors) {
  auto r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "4", "--gen-len", "3",
                             "--repetitions", "1", "--threads", "1", "--probe-mib", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| pp4 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg3 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tg3, 1 threads: forward "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("act=int8 "), std::string::npos) << r.out;
  r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "4", "--gen-len", "0",
                        "--repetitions", "1", "--threads", "1", "--probe-mib", "8", "--activations", "int8-all"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("act=int8-all"), std::string::npos) << r.out;
  for (auto bad : std::vector<std::vector<std::string>>{{"--threads", "1,x"},
                                                       {"--threads", "1,100000"},  // had hung starting the pool
                                                       {"--depth", "-1"},
                                                       {"--repetitions", "0"},
                                                       {"--kernels", "sse9"},
                                                       {"--activations", "int4"},
                                                       {"--kernels", "avx2", "--activations", "bf16"},
                                                       {"--batch-size", "0"},
                                                       {"--prompt-len", "1001", "--depth", "0,24"}}) {
    std::vector<std::string> args = {"bench", "--model-path", dir_.path() + "/m"};
    args.insert(args.end(), bad.begin(), bad.end());
    EXPECT_EQ(testing::RunDsv3(args).exit_code, 2) << bad[0] << " " << bad[1] << (bad.size() > 2 ? " " + bad[2] : "");
  }
  // Past the model's context (tiny-v3: 1024 positions), named with the file: the depth and the
  // longer of the two tests, which run apart (the depth, 1000 and 128 would have fit 24 + 1000).
  r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "1001", "--depth", "0,24"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--depth 24 + --prompt-len 1001 positions are past max_position_embeddings "
                       "1024 of " + dir_.path() + "/m/config.json"),
            std::string::npos)
      << r.err;
  r = testing::RunDsv3({"bench", "--model-path", dir_.path() + "/m", "--prompt-len", "4", "--gen-len", "1001",
                        "--depth", "24"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--depth 24 + --gen-len 1001 positions are past"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsv3
