#include "cmd/commands.h"

namespace dsv3::cmd {

const Command kCommands[] = {
    {"info", "architecture, parameter counts, dtypes and memory plan of a checkpoint", RunInfo},
    {"init", "write a random-init checkpoint from a YAML preset", RunInit},
    {"logits", "write the logits of a token sequence to a safetensors file", RunLogits},
    {"generate", "greedy or sampled generation, streamed", RunGenerate},
    {"tokenize", "text to token ids and back with a Hugging Face tokenizer.json", RunTokenize},
    {"eval", "evaluate on mmlu, humaneval, longbench, perplexity; results.json", RunEval},
    {"regress", "compare results.json with a baseline; exit 3 when a metric dropped", RunRegress},
    {"quantize", "write an fp8 / int8 / int4 (or bf16) copy of a checkpoint, verified, with sha256 per shard", RunQuantize},
    {"compare", "KL, top-1 agreement, perplexity ratio, size and decode speed of a checkpoint vs a reference", RunCompare},
    {"bench", "prefill and decode tokens/s with rooflines and peak memory, llama-bench style", RunBench},
    {nullptr, nullptr, nullptr},
};

}  // namespace dsv3::cmd
