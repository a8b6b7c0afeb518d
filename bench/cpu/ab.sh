#!/bin/bash
# Two builds of the engine and two of llama.cpp, alternated in rounds, on
# the same GGUFs: decode after a 128-token prompt for every one of them
# (llama-bench -d 128, where ours decodes), and prefill of that prompt.
#
#   bench/cpu/ab.sh BEFORE_GUEST AFTER_GUEST LLAMA_BENCH_A LLAMA_BENCH_B Q4_1_PACK Q4_1_GGUF [ROUNDS]
#
# The guests: the image's /init (cocoon-guest) of two commits; AFTER runs
# twice, with COCOON_CPU_KERNELS=avx2 and with the CPU's best kernels.
# The llama-benches: e.g. `cargo xtask bench-inference`'s (built for this
# CPU) and one built with AVX2 only. A Q4_0 GGUF of SmolLM2's shape is
# made with `synth-gguf`. Pinned: core 1 for one thread, 0-1 for two.
# BENCHMARKS.md has the figures of 2026-11-27.
set -u
B=$(realpath "${1:?BEFORE_GUEST}") A=$(realpath "${2:?AFTER_GUEST}")
LA=$(realpath "${3:?LLAMA_BENCH_A}") LB=$(realpath "${4:?LLAMA_BENCH_B}")
P41=$(realpath "${5:?Q4_1_PACK}") G41=$(realpath "${6:?Q4_1_GGUF}")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
$A synth-gguf --shape smollm2-135m --quant q4_0 --gguf $W/q4_0.gguf --pack $W/q4_0.pack > /dev/null
# The median of a run's three repetitions.
med() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2 | sort -n | sed -n 2p | xargs printf '%.1f'; }
ts() { grep -o '"avg_ts": [0-9.]*' | cut -d' ' -f2 | xargs printf '%.1f'; }
for round in $(seq "${7:-3}"); do
  for t in 1 2; do
    cpus=1; [ $t = 2 ] && cpus=0,1
    for m in q4_0:$W/q4_0.pack:$W/q4_0.gguf q4_1:$P41:$G41; do
      IFS=: read -r q pack gguf <<< "$m"
      line="round $round $q t=$t"
      for v in before:$B: after-avx2:$A:avx2 after:$A:; do
        IFS=: read -r name bin k <<< "$v"
        out=$(COCOON_CPU_KERNELS=$k taskset -c $cpus $bin bench --pack $pack --threads $t \
          --prompt-tokens 128 --gen-tokens 64 --reps 3 --device cpu --time-verify false 2>/dev/null)
        line="$line | $name decode $(med decode_tokens_per_s <<< "$out") prefill $(med prefill_tokens_per_s <<< "$out")"
      done
      for v in llama-a:$LA llama-b:$LB; do
        IFS=: read -r name bin <<< "$v"
        pp=$(taskset -c $cpus $bin -m $gguf -t $t -p 128 -n 0 -r 3 -o json 2>/dev/null | ts)
        tg=$(taskset -c $cpus $bin -m $gguf -t $t -p 0 -n 64 -d 128 -r 3 -o json 2>/dev/null | ts)
        line="$line | $name decode $tg prefill $pp"
      done
      echo "$line"
    done
  done
done
