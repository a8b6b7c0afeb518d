#!/bin/bash
# The GPU benchmark, as run on a lent H100/H200 (no Rust, no network
# there): our engine (the guest binary in host mode, built with
# `--features cuda-candle`) on synthetic-weight GGUFs of three model shapes, the
# card's memory-bandwidth roofline, and llama.cpp's CUDA build on the same
# files, all in one run on one card.
#
#   bench/gpu/run.sh CARRY OUT
#
# CARRY holds what `cargo xtask gpu-bench-prepare` packed: cocoon-guest.xz
# and llama.cpp.tar.xz (the stripped sources of the pinned llama.cpp).
# OUT receives log.txt, results.json and the raw JSON of every step
# (collected by bench/gpu/collect.py). Every step has its own time limit
# and the script goes on when one fails: a failed step is a missing
# figure, never a made-up one.
set -u
CARRY=$(cd "${1:?CARRY}" && pwd)
OUT=$(mkdir -p "${2:?OUT}" && cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
W=/tmp/gpubench
mkdir -p $W/raw
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }
SHAPES="llama-3.1-8b llama-3.2-1b smollm2-135m"
# The whole run must end inside the device call's limit; llama.cpp's
# build gets what is left after our figures.
DEADLINE=${GPU_BENCH_DEADLINE_S:-420}

say "card"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory,pstate,power.limit --format=csv | tee $W/raw/nvidia-smi.csv
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv
nproc

. "$HERE/libs.sh"
command -v nvcc >/dev/null || export PATH=$PATH:/usr/local/cuda/bin
nvcc --version | tail -1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

BIN=$W/cocoon-guest
xz -dc "$CARRY/cocoon-guest.xz" > $BIN && chmod +x $BIN
ldd $BIN | grep -E 'cuda|cublas|curand|nvrtc|not found'

# llama.cpp: configure and build in the background, at the lowest
# priority and on 14 of the 16 cores, while our engine runs (it is
# launch-bound: one core per process is what it needs).
(
  set -e
  mkdir -p $W/llama/src
  tar -xJf "$CARRY/llama.cpp.tar.xz" -C $W/llama/src
  GEN=; command -v ninja >/dev/null && GEN="-G Ninja"
  cmake -S $W/llama/src -B $W/llama/build $GEN -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DGGML_NATIVE=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DBUILD_SHARED_LIBS=OFF
  nice -n 19 cmake --build $W/llama/build -j 14 --target llama-bench
) > $W/raw/llama-build.log 2>&1 &
BUILD_PID=$!

say "roofline: device-to-device copy through PyTorch"
timeout 60 python3 "$HERE/roofline.py" > $W/raw/roofline.json
cat $W/raw/roofline.json

for s in $SHAPES; do
  say "synth $s"
  timeout 90 $BIN synth-gguf --shape $s --quant q4_0 --gguf $W/$s.gguf --pack $W/$s.pack \
    > $W/raw/synth-$s.json && cat $W/raw/synth-$s.json
done

say "greedy tokens, CPU against GPU (smollm2-135m shape)"
timeout 90 $BIN bench --pack $W/smollm2-135m.pack --device cpu --threads 2 --time-verify false \
  --prompt-tokens 128 --gen-tokens 64 --reps 1 --warmup 0 --first-tokens 32 --probe-steps 1 \
  > $W/raw/tokens-cpu-smollm2-135m.json

for s in $SHAPES; do
  say "ours on GPU: $s"
  timeout 150 $BIN bench --pack $W/$s.pack --device cuda --time-verify false \
    --prompt-tokens 128 --gen-tokens 64 --reps 3 --probe-steps 16 --first-tokens 32 \
    --concurrency 1,8,32 --concurrent-gen-tokens 16 --concurrent-reps 1 \
    > $W/raw/ours-$s.json
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ("runs","concurrent","enqueue_probe","cold_time_to_first_token_s")})' $W/raw/ours-$s.json
done

say "waiting for the llama.cpp build"
while kill -0 $BUILD_PID 2>/dev/null && [ $(($(date +%s) - T0)) -lt $((DEADLINE - 60)) ]; do sleep 5; done
if kill -0 $BUILD_PID 2>/dev/null; then
  say "llama.cpp build not done in time; stopping it"
  kill $BUILD_PID; pkill -P $BUILD_PID
fi
tail -5 $W/raw/llama-build.log
LB=$W/llama/build/bin/llama-bench
if [ -x $LB ]; then
  for s in $SHAPES; do
    left=$((DEADLINE - ($(date +%s) - T0)))
    [ $left -gt 15 ] || break
    say "llama-bench $s"
    timeout $((left - 5)) $LB -m $W/$s.gguf -ngl 99 -p 128 -n 64 -d 0,128 -r 3 -o json > $W/raw/llama-$s.json
  done
  # Ours again on the 8B shape with the machine quiet (the figures above
  # ran while llama.cpp compiled), if time is left.
  left=$((DEADLINE - ($(date +%s) - T0)))
  if [ $left -gt 40 ]; then
    say "ours on GPU again, machine quiet: llama-3.1-8b batch 1"
    timeout $((left - 5)) $BIN bench --pack $W/llama-3.1-8b.pack --device cuda --time-verify false \
      --prompt-tokens 128 --gen-tokens 64 --reps 3 > $W/raw/ours-quiet-llama-3.1-8b.json
  fi
fi

nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
say "collect"
python3 "$HERE/collect.py" $W/raw > "$OUT/results.json"
cp $W/raw/llama-build.log "$OUT/" 2>/dev/null
tar -C $W -czf "$OUT/raw.tar.gz" raw
python3 "$HERE/collect.py" --table $W/raw
say "done"
