#!/bin/bash
# Two builds of the engine and two of llama.cpp, alternated in rounds, on
# the same GGUFs: decode after a DEPTH-token prompt (128) for every one of
# them (llama-bench -d DEPTH, where ours decodes), and prefill of 128.
# Each figure is the best of REPS (8) repetitions, on both sides: on a
# shared VM interference only slows a run down, and medians of three
# moved ±15 % between rounds.
#
#   [REPS=8] [DEPTH=128] bench/cpu/ab.sh BEFORE_GUEST AFTER_GUEST LLAMA_BENCH_A LLAMA_BENCH_B Q4_1_PACK Q4_1_GGUF [ROUNDS]
#
# The guests: the image's /init (cocoon-guest) of two commits; AFTER runs
# twice, with COCOON_CPU_KERNELS=avx2 and with the CPU's best kernels.
# The llama-benches: e.g. `cargo xtask bench-inference`'s (built for this
# CPU) and one built with AVX2 only. A Q4_0 GGUF of SmolLM2's shape is
# made with `synth-gguf`. Pinned: core 1 for one thread, 0-1 for two.
# BENCHMARKS.md has the figures of 2026-11-27 (medians of three then).
set -u
B=$(realpath "${1:?BEFORE_GUEST}") A=$(realpath "${2:?AFTER_GUEST}")
LA=$(realpath "${3:?LLAMA_BENCH_A}") LB=$(realpath "${4:?LLAMA_BENCH_B}")
P41=$(realpath "${5:?Q4_1_PACK}") G41=$(realpath "${6:?Q4_1_GGUF}")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
$A synth-gguf --shape smollm2-135m --quant q4_0 --gguf $W/q4_0.gguf --pack $W/q4_0.pack > /dev/null
REPS=${REPS:-8} DEPTH=${DEPTH:-128}
# The best of a run's repetitions: ours, and llama-bench's samples.
best() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2 | sort -n | tail -1 | xargs printf '%.1f'; }
ts() { tr -d '\n' | grep -o '"samples_ts": \[[^]]*\]' | grep -o '[0-9.]\+' | sort -n | tail -1 | xargs printf '%.1f'; }
for round in $(seq "${7:-3}"); do
  for t in 1 2; do
    cpus=1; [ $t = 2 ] && cpus=0,1
    for m in q4_0:$W/q4_0.pack:$W/q4_0.gguf q4_1:$P41:$G41; do
      IFS=: read -r q pack gguf <<< "$m"
      line="round $round $q t=$t"
      for v in before:$B: after-avx2:$A:avx2 after:$A:; do
        IFS=: read -r name bin k <<< "$v"
        out=$(COCOON_CPU_KERNELS=$k taskset -c $cpus $bin bench --pack $pack --threads $t \
          --prompt-tokens 128 --gen-tokens 64 --reps "$REPS" --device cpu --time-verify false 2>/dev/null)
        if [ "$DEPTH" != 128 ]; then
          deep=$(COCOON_CPU_KERNELS=$k taskset -c $cpus $bin bench --pack $pack --threads $t \
            --prompt-tokens "$DEPTH" --gen-tokens 64 --reps "$REPS" --device cpu --time-verify false 2>/dev/null)
        else
          deep=$out
        fi
        line="$line | $name decode $(best decode_tokens_per_s <<< "$deep") prefill $(best prefill_tokens_per_s <<< "$out")"
      done
      for v in llama-a:$LA llama-b:$LB; do
        IFS=: read -r name bin <<< "$v"
        pp=$(taskset -c $cpus $bin -m $gguf -t $t -p 128 -n 0 -r "$REPS" -o json 2>/dev/null | ts)
        tg=$(taskset -c $cpus $bin -m $gguf -t $t -p 0 -n 64 -d "$DEPTH" -r "$REPS" -o json 2>/dev/null | ts)
        line="$line | $name decode $tg prefill $pp"
      done
      echo "$line"
    done
  done
done
