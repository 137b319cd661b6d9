#!/bin/bash
# llama-bench and dsv3 bench on the same machine and the same shape, the two tools taking turns
# per format (a shared machine's speed moves within minutes), pp512 and tg128, 2 threads, 5
# repetitions each. See README.md here for making the GGUF files.
#
# usage: compare.sh LLAMA_BENCH GGUF_DIR DSV3_MODELS_DIR [DSV3_BINARY]
#   GGUF_DIR holds bench-v3-mini-{bf16,Q8_0,Q4_0,Q4_K_M}.gguf;
#   DSV3_MODELS_DIR holds bench-v3-mini{,-int8,-int8-h,-int4,-int4-h} (dsv3 init + dsv3 quantize,
#   as README.md here says).
set -euo pipefail
lb=$1 gguf=$2 models=$3 dsv3=${4:-build/dsv3}
args=(-p 512 -n 128 -t 2 -r 5)
llama() { echo "== llama-bench $1"; "$lb" -m "$gguf/bench-v3-mini-$1.gguf" "${args[@]}" 2>&1 | grep -E '^\|'; }
ours() {
  echo "== dsv3 bench $1"
  "$dsv3" bench --model-path "$models/bench-v3-mini$1" --prompt-len 512 --gen-len 128 --threads 2 --repetitions 5 |
    grep -E '^\||ceilings'
}
date -u
llama bf16; ours ""
ours -int8; llama Q8_0
llama Q8_0; ours -int8-h
ours -int4-h; llama Q4_0
llama Q4_K_M; ours -int4
ours -int4-h; llama Q4_K_M
date -u
