#!/bin/bash
# llama-bench and dsv3 bench on the same machine and the same shape, the two tools taking turns
# per format (a shared machine's speed moves within minutes), pp512 and tg128 (each from an
# empty context), 2 threads, 5 repetitions each; dsv3's INT8, INT4 and INT4-h also prefill with
# int8 activations in every step (--activations int8-all), as llama.cpp multiplies its 8- and
# 4-bit files. Each file is dropped from the page cache and read back before its tool runs, so that
# neither finds the other's pages warm. See README.md here for making the GGUF files.
#
# usage: compare.sh LLAMA_BENCH GGUF_DIR DSV3_MODELS_DIR [DSV3_BINARY]
#   GGUF_DIR holds bench-v3-mini-{bf16,Q8_0,Q4_0,Q4_K_M}.gguf;
#   DSV3_MODELS_DIR holds bench-v3-mini{,-fp8,-fp8-h,-int8,-int8-h,-int4,-int4-h} (dsv3 init +
#   dsv3 quantize, as README.md here says).
set -euo pipefail
lb=$1 gguf=$2 models=$3 dsv3=${4:-build/dsv3}
fresh() {
  for f in "$@"; do
    dd if="$f" iflag=nocache count=0 status=none
    cat "$f" > /dev/null
  done
}
llama() {
  echo "== llama-bench $1"
  fresh "$gguf/bench-v3-mini-$1.gguf"
  "$lb" -m "$gguf/bench-v3-mini-$1.gguf" -p 512 -n 128 -t 2 -r 5 2>&1 | grep -E '^\|'
}
dsv3_bench() {  # SUFFIX, then dsv3 bench's test options
  echo "== dsv3 bench bench-v3-mini$1 ${*:2}"
  fresh "$models/bench-v3-mini$1"/*.safetensors
  "$dsv3" bench --model-path "$models/bench-v3-mini$1" --threads 2 --repetitions 5 "${@:2}" | grep -E '^\||ceilings'
}
ours() { dsv3_bench "$1" --prompt-len 512 --gen-len 128; }
ours_int8_all() { dsv3_bench "$1" --prompt-len 512 --gen-len 0 --activations int8-all; }
date -u
llama bf16; ours ""
ours -fp8; ours -fp8-h
ours -int8; ours_int8_all -int8; llama Q8_0
llama Q8_0; ours -int8-h
ours -int4-h; ours_int8_all -int4-h; llama Q4_0
llama Q4_K_M; ours -int4; ours_int8_all -int4
ours -int4-h; llama Q4_K_M
date -u
