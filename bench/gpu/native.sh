#!/bin/bash
# The engine's own CUDA path (engine/src/cuda) on a lent H100/H200, in one
# device call: its logits against the CPU engine's on synthetic models of
# every block format it takes, the decode step as a CUDA graph against the
# same kernels launched one by one (the same bits expected), with and
# without programmatic dependent launch, and decode
# speed on three model shapes against the card's roofline and against
# candle's CUDA path, all in this run on this card.
#
#   bench/gpu/native.sh BIN OUT
#
# BIN is the guest binary built with `--features cuda-candle`, or the
# cocoon-guest.xz that `cargo xtask gpu-bench-prepare` packs; a
# cuda-tests.xz beside it (engine/tests/cuda.rs, packed there too) runs
# first, and a test that hangs stops the script; an init.xz beside it (the
# images' /init) is checked and timed too. With BASE=an earlier
# cocoon-guest.xz, that build is timed on the 8B shape as well, so that a
# change to the kernels is measured against them in the same call. OUT
# receives log.txt and raw.tgz, the JSON of every step (the device tool brings back few files).
# Each step has its own time limit and the script goes on when one fails:
# a failed step is a missing figure.
set -u
BIN=$(realpath "${1:?BIN}")
OUT=$(mkdir -p "${2:?OUT}" && cd "$2" && pwd)
BASE=${BASE:+$(realpath "$BASE")}
HERE=$(cd "$(dirname "$0")" && pwd)
W=/tmp/native
RAW=$W/raw
mkdir -p $RAW
if [[ $BIN == *.xz ]]; then
  xz -dc "$BIN" > $W/cocoon-guest && chmod +x $W/cocoon-guest && BIN=$W/cocoon-guest
fi
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }

say "card"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,pstate,power.limit --format=csv
. "$HERE/libs.sh"

TESTS=$(dirname "$BIN")/cuda-tests.xz
[ -f "$TESTS" ] || TESTS=$(dirname "$(realpath "$1")")/cuda-tests.xz
if [ -f "$TESTS" ]; then
  say "engine/tests/cuda.rs"
  xz -dc "$TESTS" > $W/cuda-tests && chmod +x $W/cuda-tests
  timeout 100 $W/cuda-tests --test-threads=1 2>&1 | tail -25
  [ ${PIPESTATUS[0]} = 124 ] && { say "the CUDA tests hung: stopping"; exit 1; }
fi

say "roofline"
timeout 60 python3 "$HERE/roofline.py" | tee $RAW/roofline.json

# Correctness: every format on the SmolLM2 shape (a 128-token prompt run in
# two passes, then 8 decode steps), CPU engine against CUDA with graphs and
# without.
for q in q4_0 q4_1 q8_0; do
  m=$W/smollm2-135m-$q
  timeout 60 $BIN synth-gguf --shape smollm2-135m --quant $q --gguf $m.gguf --pack $m.pack > /dev/null
  probe="--time-verify false --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 8"
  timeout 60 $BIN bench --pack $m.pack --device cpu --threads 8 $probe --logits-out $W/cpu-$q.f32 > $RAW/probe-cpu-$q.json
  timeout 60 $BIN bench --pack $m.pack --device cuda $probe --logits-out $W/cuda-$q.f32 > $RAW/probe-cuda-$q.json
  [ $? = 124 ] && { say "the CUDA path hung: stopping"; exit 1; }
  COCOON_CUDA_GRAPHS=0 timeout 60 $BIN bench --pack $m.pack --device cuda $probe --logits-out $W/nograph-$q.f32 > $RAW/probe-nograph-$q.json
  say "logits $q: $(python3 "$HERE/compare_logits.py" $W/cpu-$q.f32 $W/cuda-$q.f32 $W/nograph-$q.f32 | tee $RAW/compare-$q.json)"
done
grep -h '"engine"\|error' $RAW/probe-cuda-q4_0.json | head -3

# The images' /init (init.xz, packed beside BIN): the same source built by
# the pinned CUDA 12.4 nvcc, libcuda opened at run time. Its logits against
# the CPU engine's here, its speed on the 8B shape below.
INIT=$(dirname "$(realpath "$1")")/init.xz
if [ -f "$INIT" ]; then
  xz -dc "$INIT" > $W/init && chmod +x $W/init
  m=$W/smollm2-135m-q4_0
  say "the images' /init: q4_0 probe"
  timeout 60 $W/init bench --pack $m.pack --device cuda $probe --logits-out $W/init-q4_0.f32 > $RAW/probe-init-q4_0.json
  grep -h '"engine"\|"device"\|error' $RAW/probe-init-q4_0.json | head -3
  say "logits q4_0, CPU against /init: $(python3 "$HERE/compare_logits.py" $W/cpu-q4_0.f32 $W/init-q4_0.f32 | tee $RAW/compare-init-q4_0.json)"
fi

for s in llama-3.1-8b llama-3.2-1b smollm2-135m; do
  say "synth $s"
  timeout 90 $BIN synth-gguf --shape $s --quant q4_0 --gguf $W/$s.gguf --pack $W/$s.pack | tee $RAW/synth-$s.json
  say "ours, native CUDA: $s"
  timeout 120 $BIN bench --pack $W/$s.pack --device cuda --time-verify false \
    --prompt-tokens 128 --gen-tokens 64 --reps 3 --probe-steps 16 \
    --concurrency 1,8,32 --concurrent-gen-tokens 16 --concurrent-reps 1 > $RAW/native-$s.json
  python3 "$HERE/summary.py" $RAW/native-$s.json
  if [ $s = llama-3.1-8b ] && command -v ncu > /dev/null; then
    # Each kernel's time in one decode step (graphs off, so that ncu sees
    # the launches): the prompt's two passes are 2 x 1153 + 2 launches, a
    # step 1 + 32 x 8 + 2.
    say "ncu: the kernels of one decode step, $s"
    COCOON_CUDA_GRAPHS=0 timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
      --launch-skip 2308 --launch-count 259 $BIN bench --pack $W/$s.pack --device cuda --time-verify false \
      --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 2 > $RAW/ncu-$s.csv 2> $RAW/ncu-$s.err
    python3 "$HERE/ncu_summary.py" $RAW/ncu-$s.csv || tail -5 $RAW/ncu-$s.err
    # What limits the matrix kernels: the prompt's output product, then a
    # decode step's q|k|v, output projection, SwiGLU and down projection.
    say "ncu: memory and occupancy of the matrix kernels, $s"
    COCOON_CUDA_GRAPHS=0 timeout 120 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section Occupancy --section LaunchStats -k 'regex:^(matvec_q4_0_1|swiglu_q4_0_1)$' --launch-count 5 \
      $BIN bench --pack $W/$s.pack --device cuda --time-verify false \
      --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 1 > $RAW/ncu-sections-$s.txt 2>&1
    grep -E "^  [a-z_0-9]+ \(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Waves Per SM|Block Limit Registers|L1/TEX Hit|L2 Hit" $RAW/ncu-sections-$s.txt | head -80
    say "ours, native CUDA, launches one by one (no graph): $s"
    COCOON_CUDA_GRAPHS=0 timeout 90 $BIN bench --pack $W/$s.pack --device cuda --time-verify false \
      --prompt-tokens 128 --gen-tokens 64 --reps 3 > $RAW/native-$s-nograph.json
    python3 "$HERE/summary.py" $RAW/native-$s-nograph.json
    say "ours, native CUDA, each kernel after the last has ended (no PDL): $s"
    COCOON_CUDA_PDL=0 timeout 90 $BIN bench --pack $W/$s.pack --device cuda --time-verify false \
      --prompt-tokens 128 --gen-tokens 64 --reps 3 > $RAW/native-$s-nopdl.json
    python3 "$HERE/summary.py" $RAW/native-$s-nopdl.json
  fi
done
if [ -x $W/init ]; then
  say "the images' /init, native CUDA: llama-3.1-8b"
  timeout 120 $W/init bench --pack $W/llama-3.1-8b.pack --device cuda --time-verify false \
    --prompt-tokens 128 --gen-tokens 64 --reps 3 > $RAW/init-llama-3.1-8b.json
  python3 "$HERE/summary.py" $RAW/init-llama-3.1-8b.json
fi
if [ -n "$BASE" ]; then
  xz -dc "$BASE" > $W/base && chmod +x $W/base
  say "the earlier build (BASE), native CUDA: llama-3.1-8b"
  timeout 120 $W/base bench --pack $W/llama-3.1-8b.pack --device cuda --time-verify false \
    --prompt-tokens 128 --gen-tokens 64 --reps 3 > $RAW/base-llama-3.1-8b.json
  python3 "$HERE/summary.py" $RAW/base-llama-3.1-8b.json
fi
if [ "${WITH_CANDLE:-1}" = 1 ]; then
  say "candle's CUDA path: llama-3.1-8b"
  timeout 120 $BIN bench --pack $W/llama-3.1-8b.pack --device cuda --cpu-engine candle --time-verify false \
    --prompt-tokens 128 --gen-tokens 64 --reps 3 > $RAW/candle-llama-3.1-8b.json
  python3 "$HERE/summary.py" $RAW/candle-llama-3.1-8b.json
fi
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
tar -czf $OUT/raw.tgz -C $W raw
say "done"
