#!/bin/bash
# The CPU engine's Q4 layouts side by side with llama.cpp, alternated in
# rounds: COCOON_CPU_INTERLEAVE=1 (groups of four rows, the default), =0
# (the GGUF's layout), then llama-bench, at 1 and 2 threads, on a
# synthetic Q4_0 GGUF of SmolLM2's shape and on the pinned Q4_1 model.
#
#   bench/cpu/layout.sh GUEST LLAMA_BENCH Q4_1_PACK Q4_1_GGUF [ROUNDS]
#
# GUEST: the image's /init (target/x86_64-unknown-linux-gnu/guest/cocoon-guest
# after `cargo xtask build`); LLAMA_BENCH: the one `cargo xtask
# bench-inference` builds (target/cocoon/llama.cpp/build/bin/llama-bench);
# the pack and its GGUF: target/cocoon/models/smollm2-135m-instruct.pack
# and the GGUF `cargo xtask model-pack` took it from. BENCHMARKS.md has
# the figures of 2026-11-27.
set -u
G=$(realpath "${1:?GUEST}") L=$(realpath "${2:?LLAMA_BENCH}")
P41=$(realpath "${3:?Q4_1_PACK}") G41=$(realpath "${4:?Q4_1_GGUF}")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
$G synth-gguf --shape smollm2-135m --quant q4_0 --gguf $W/q4_0.gguf --pack $W/q4_0.pack > /dev/null
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2 | tr '\n' ' '; }
for round in $(seq "${5:-3}"); do
  for t in 1 2; do
    for m in q4_0:$W/q4_0.pack:$W/q4_0.gguf q4_1:$P41:$G41; do
      IFS=: read -r q pack gguf <<< "$m"
      for il in 1 0; do
        out=$(COCOON_CPU_INTERLEAVE=$il $G bench --pack $pack --threads $t --prompt-tokens 128 \
          --gen-tokens 64 --reps 3 --device cpu --time-verify false 2>/dev/null)
        echo "round $round $q t=$t ours interleave=$il decode $(field decode_tokens_per_s <<< "$out")prefill $(field prefill_tokens_per_s <<< "$out" | cut -d' ' -f1)"
      done
      # Decode after 128 positions (-d), where ours decodes.
      out=$($L -m $gguf -t $t -p 128 -n 0 -r 3 -o json 2>/dev/null; $L -m $gguf -t $t -p 0 -n 64 -d 128 -r 3 -o json 2>/dev/null)
      echo "round $round $q t=$t llama.cpp prefill, decode $(grep -o '"avg_ts": [0-9.]*' <<< "$out" | cut -d: -f2 | tr '\n' ' ')"
    done
  done
done
