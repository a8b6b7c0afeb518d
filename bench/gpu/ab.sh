#!/bin/bash
# Variants of the engine's own CUDA decode against each other in one device
# call, on one card: the same binary under environment switches (those
# Tuning::from_env reads, e.g. COCOON_CUDA_DECODE=one-row) and, with BASE=an
# earlier build's cocoon-guest.xz, that build too.
#
#   VARIANTS="COCOON_CUDA_DECODE=one-row" [BASE=OLD/cocoon-guest.xz] [ROUNDS=2] \
#     [SHAPES="llama-3.1-8b llama-3.2-1b smollm2-135m"] bench/gpu/ab.sh DIR OUT
#
# DIR is the folder `cargo xtask gpu-bench-prepare` writes (cocoon-guest.xz,
# cuda-tests.xz). Steps: engine/tests/cuda.rs; the roofline (a
# device-to-device copy); on the first shape, every variant's logits
# (a 128-token prompt, 8 decode steps) against the default's, which must
# be the same bits (variants change speed, not results; BASE is compared
# but may differ if its kernels add in another order); then ROUNDS rounds
# in which each variant in turn decodes each shape (batch 1, 128-token
# prompt, 64 tokens, 3 runs). Ends with a table of decode tokens/s per
# variant and round. NCU=1 adds, for the default, each kernel's time in
# one decode step of the first shape (`ncu`), NCU=2 also the memory
# sections of its decode matrix kernels. OUT gets log.txt and raw.tgz.
set -u
DIR=$(realpath "${1:?DIR}")
OUT=$(mkdir -p "${2:?OUT}" && cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-2}
SHAPES=${SHAPES:-llama-3.1-8b llama-3.2-1b smollm2-135m}
W=/tmp/ab
RAW=$W/raw
mkdir -p $RAW
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,pstate,power.limit --format=csv
. "$HERE/libs.sh"
xz -dc "$DIR/cocoon-guest.xz" > $W/new && chmod +x $W/new
declare -A BINS=([default]=$W/new)
NAMES=(default)
for v in ${VARIANTS:-}; do BINS[$v]=$W/new; NAMES+=("$v"); done
if [ -n "${BASE:-}" ]; then
  xz -dc "$BASE" > $W/base && chmod +x $W/base
  BINS[base]=$W/base
  NAMES+=(base)
fi
# name -> "env ... binary": a variant's name is its VAR=value switch.
cmdline() { if [[ $1 == *=* ]]; then echo "env $1 ${BINS[$1]}"; else echo "${BINS[$1]}"; fi; }

if [ -f "$DIR/cuda-tests.xz" ]; then
  say "engine/tests/cuda.rs"
  xz -dc "$DIR/cuda-tests.xz" > $W/cuda-tests && chmod +x $W/cuda-tests
  timeout 120 $W/cuda-tests --test-threads=1 2>&1 | tail -12
  [ ${PIPESTATUS[0]} = 124 ] && { say "the CUDA tests hung: stopping"; exit 1; }
fi
say "roofline"
timeout 60 python3 "$HERE/roofline.py" | tee $RAW/roofline.json

for s in $SHAPES; do
  say "synth $s"
  timeout 120 $W/new synth-gguf --shape $s --quant q4_0 --gguf $W/$s.gguf --pack $W/$s.pack > $RAW/synth-$s.json
done

first=${SHAPES%% *}
say "logits on $first: every variant against the default"
probe="--time-verify false --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 8"
files=()
for n in "${NAMES[@]}"; do
  f=$W/logits-${n//[^A-Za-z0-9_]/_}.f32
  timeout 120 $(cmdline "$n") bench --pack $W/$first.pack --device cuda $probe --logits-out $f > $RAW/probe-${n//[^A-Za-z0-9_]/_}.json
  files+=("$f")
done
say "$(python3 "$HERE/compare_logits.py" "${files[@]}" | tee $RAW/compare.json)"

for r in $(seq 1 $ROUNDS); do
  for s in $SHAPES; do
    for n in "${NAMES[@]}"; do
      j=$RAW/r$r-$s-${n//[^A-Za-z0-9_]/_}.json
      timeout 120 $(cmdline "$n") bench --pack $W/$s.pack --device cuda --time-verify false \
        --prompt-tokens 128 --gen-tokens 64 --reps 3 > $j 2> $j.err
      say "round $r $s $n: $(python3 "$HERE/summary.py" $j 2>&1 | python3 -c 'import json, sys; d = json.load(sys.stdin); print({k: d[k] for k in ("decode_tok_s", "all_decode", "prefill_tok_s", "ttft_s")})' 2>&1 | cut -c1-160)"
    done
  done
done

if [ "${NCU:-0}" -ge 1 ] && command -v ncu > /dev/null; then
  # The default's kernels in one decode step of the first shape (graphs
  # off, so that ncu sees the launches; a 128-token prompt is two passes
  # of 1153 launches on the 8B shape, plus 2; a step 259), then the
  # memory sections of its matrix kernels.
  say "ncu: the kernels of one decode step, $first"
  COCOON_CUDA_GRAPHS=0 timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
    --launch-skip ${NCU_SKIP:-2308} --launch-count ${NCU_COUNT:-259} $W/new bench --pack $W/$first.pack --device cuda \
    --time-verify false --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 2 > $RAW/ncu.csv 2> $RAW/ncu.err
  python3 "$HERE/ncu_summary.py" $RAW/ncu.csv || tail -5 $RAW/ncu.err
fi
if [ "${NCU:-0}" = 2 ] && command -v ncu > /dev/null; then
  say "ncu: memory and occupancy of the decode matrix kernels, $first"
  COCOON_CUDA_GRAPHS=0 timeout 120 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section Occupancy --section LaunchStats -k "regex:${NCU_KERNELS:-^(matvec_q4_0_r2|matvec_q4_0_1|swiglu_q4_0_pair)$}" \
    --launch-count 4 $W/new bench --pack $W/$first.pack --device cuda --time-verify false \
    --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 1 > $RAW/ncu-sections.txt 2>&1
  grep -E "^  [a-z_0-9]+ \(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Waves Per SM|L1/TEX Hit|L2 Hit" $RAW/ncu-sections.txt | head -60
fi
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
tar -czf $OUT/raw.tgz -C $W raw
echo "decode tok/s (median of 3) per round; roofline $(grep -o '"bytes_per_s": [0-9.]*' $RAW/roofline.json)"
for s in $SHAPES; do
  for n in "${NAMES[@]}"; do
    line="$s $n:"
    for r in $(seq 1 $ROUNDS); do
      line+=" $(grep -o '"decode_tokens_per_s":[0-9.]*' $RAW/r$r-$s-${n//[^A-Za-z0-9_]/_}.json 2>/dev/null | cut -d: -f2 | sort -n | sed -n 2p)"
    done
    echo "$line"
  done
done
say "done"
