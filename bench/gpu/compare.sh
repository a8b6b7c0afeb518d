#!/bin/bash
# The engine's CUDA kernels against an earlier build of them, in one short
# device call: the CUDA tests, the roofline, logits against the CPU engine,
# then batch-1 decode of the 8B shape (new, base and the images' /init) and
# of the 1B and SmolLM2 shapes (new).
#
#   bench/gpu/compare.sh DIR BASE OUT
#
# DIR: the folder `cargo xtask gpu-bench-prepare` packs (cocoon-guest.xz,
# init.xz, cuda-tests.xz); BASE: an earlier cocoon-guest.xz; OUT receives
# log.txt and one JSON per run. About 110 s on an H200.
set -u
DIR=$(realpath "${1:?DIR}"); BASE=$(realpath "${2:?BASE}")
OUT=$(mkdir -p "${3:?OUT}" && cd "$3" && pwd)
H=$(cd "$(dirname "$0")" && pwd)
exec > >(tee -a $OUT/log.txt) 2>&1
W=/tmp/compare; mkdir -p $W
T0=$(date +%s); say() { echo "[$(($(date +%s) - T0))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
. $H/libs.sh
xz -dc $DIR/cocoon-guest.xz > $W/new && xz -dc $BASE > $W/base && xz -dc $DIR/init.xz > $W/init
xz -dc $DIR/cuda-tests.xz > $W/tests && chmod +x $W/*
say "engine/tests/cuda.rs"
(cd $H/../../engine && timeout 40 $W/tests --test-threads=1 2>&1 | grep -E "^test |result|panicked|differ")
say roofline; timeout 30 python3 $H/roofline.py
m=$W/s; timeout 30 $W/new synth-gguf --shape smollm2-135m --quant q4_0 --gguf $m.gguf --pack $m.pack > /dev/null
p="--time-verify false --prompt-tokens 128 --gen-tokens 1 --reps 0 --warmup 0 --probe-steps 8"
timeout 30 $W/new bench --pack $m.pack --device cpu --threads 8 $p --logits-out $W/cpu.f32 > /dev/null
timeout 30 $W/new bench --pack $m.pack --device cuda $p --logits-out $W/new.f32 > /dev/null
timeout 30 $W/init bench --pack $m.pack --device cuda $p --logits-out $W/init.f32 > /dev/null
say "logits: $(python3 $H/compare_logits.py $W/cpu.f32 $W/new.f32 $W/init.f32)"
timeout 60 $W/new synth-gguf --shape llama-3.1-8b --quant q4_0 --gguf $W/8b.gguf --pack $W/8b.pack > /dev/null
b="--device cuda --time-verify false --prompt-tokens 128 --gen-tokens 64 --reps 3"
bench() { # name env bin pack
  say "$1"; env $2 timeout 60 $3 bench --pack $4 $b > $OUT/$1.json 2>$W/$1.err
  python3 $H/summary.py $OUT/$1.json || tail -3 $W/$1.err
}
bench new-8b X=1 $W/new $W/8b.pack
bench base-8b X=1 $W/base $W/8b.pack
bench init-8b X=1 $W/init $W/8b.pack
rm -f $W/8b.gguf $W/8b.pack
for s in llama-3.2-1b smollm2-135m; do
  timeout 30 $W/new synth-gguf --shape $s --quant q4_0 --gguf $W/$s.gguf --pack $W/$s.pack > /dev/null
  bench new-$s X=1 $W/new $W/$s.pack
done
say done
