#!/bin/bash
# CPU figures on a bigger machine (the lent GPU machines have 16 cores):
# pack verification, and our engine against llama.cpp on synthetic GGUFs
# (the same file for both). Run from a folder holding this script and:
#   cocoon-guest   target/x86_64-unknown-linux-gnu/guest/cocoon-guest (cargo xtask build)
#   verify_speed   target/release/examples/verify_speed (cargo build --release -p cocoon-engine --examples)
#   pool_overhead  target/release/examples/pool_overhead (the same command)
#   kernel_speed   target/release/examples/kernel_speed (the same command)
#   llama-bench    the one `cargo xtask bench-inference` builds, with its
#                  libssl.so.3, libcrypto.so.3 and libgomp.so.1 beside it
#   llama.cpp.tar.xz  (optional) the sources `cargo xtask gpu-bench-prepare`
#                  packs: if cmake is here, a llama-bench is built from them
#                  for this machine's CPU (GGML_NATIVE, as our engine picks
#                  this CPU's best kernels) and used instead of the carried
#                  one, which was built for the machine that carried it
# Results go to $OUT (one JSON per run); BENCHMARKS.md has the figures.
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=$PWD
nproc; lscpu | grep -E "Model name|Thread|Core|Socket|L3" | cut -c1-120
grep -o -w 'avx512f\|avx512_vnni\|sha_ni\|avx2' /proc/cpuinfo | sort | uniq -c
G=./cocoon-guest
if [ -f llama.cpp.tar.xz ] && command -v cmake > /dev/null; then
  mkdir -p llama-native/src
  tar -xJf llama.cpp.tar.xz -C llama-native/src
  if cmake -S llama-native/src -B llama-native/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
      -DBUILD_SHARED_LIBS=OFF > $OUT/llama-native-build.log 2>&1 \
    && cmake --build llama-native/build -j "$(nproc)" --target llama-bench >> $OUT/llama-native-build.log 2>&1; then
    cp llama-native/build/bin/llama-bench ./llama-bench
    echo "llama-bench: built here for this CPU (GGML_NATIVE)"
  else
    echo "llama-bench: the native build failed (llama-native-build.log); using the carried one"
  fi
fi
for spec in smollm2-135m:q4_1 smollm2-135m:q4_0 llama-3.2-1b:q4_1; do
  sh=${spec%:*}; q=${spec#*:}
  $G synth-gguf --shape $sh --quant $q --gguf $sh-$q.gguf --pack $sh-$q.pack > $OUT/synth-$sh-$q.json
done
ls -la *.pack; sha256sum *.pack | tee $OUT/packs.sha256
run() { # shape quant threads
  local m=$1-$2
  timeout 120 $G bench --pack $m.pack --threads $3 --prompt-tokens 128 --gen-tokens 64 --reps 3 --device cpu > $OUT/ours-$m-$3.json 2>$OUT/ours-$m-$3.err
  echo "ours $m t=$3 $(grep -o '"decode_tokens_per_s":[0-9.]*' $OUT/ours-$m-$3.json | cut -d: -f2 | tr '\n' ' ') prefill $(grep -o '"prefill_tokens_per_s":[0-9.]*' $OUT/ours-$m-$3.json | cut -d: -f2 | head -1)"
  # pp128, then tg64 from an empty cache and after 128 positions (-d):
  # ours decodes after its 128-token prompt, so the second is the fair one.
  timeout 120 ./llama-bench -m $m.gguf -t $3 -p 128 -n 64 -d 0,128 -r 3 -o json > $OUT/llama-$m-$3.json 2>$OUT/llama-$m-$3.err
  echo "llama $m t=$3 pp128 d0, pp128 d128, tg64 d0, tg64 d128: $(grep -o '"avg_ts": [0-9.]*' $OUT/llama-$m-$3.json | cut -d: -f2 | tr '\n' ' ')"
}
# Most wanted first (a device call may end before the last): how the
# thread team scales, then decode at many threads, where we fell behind.
# The thread team's cost per section (64 items in chunks of 4, as a small
# model's sections hand them out), and how many threads take part in a
# section of 64 x 1 us (all of them, since joining retries; before, a
# worker that lost the race sat the section out).
for t in 1 2 4 8 16; do ./pool_overhead $t | tee -a $OUT/pool.txt; done
for t in 16 8 4 2 1; do run smollm2-135m q4_1 $t; done
for t in 16 8 1; do run smollm2-135m q4_0 $t; done
# The same Q4_0 decode with the GGUF's layout instead of the interleaved
# groups of four rows (the default since 2026-11-27), to tell what the
# layout does at many threads.
for t in 16 8 1; do
  COCOON_CPU_INTERLEAVE=0 timeout 120 $G bench --pack smollm2-135m-q4_0.pack --threads $t --prompt-tokens 128 --gen-tokens 64 --reps 3 --device cpu > $OUT/ours-gguf-layout-q4_0-$t.json 2>$OUT/ours-gguf-layout-q4_0-$t.err
  echo "ours, GGUF layout, smollm2-135m-q4_0 t=$t $(grep -o '"decode_tokens_per_s":[0-9.]*' $OUT/ours-gguf-layout-q4_0-$t.json | cut -d: -f2 | tr '\n' ' ')"
done
for t in 16 4; do run llama-3.2-1b q4_1 $t; done
# One core's multiply-adds per second in the dot kernels (four rows per
# call), cache-resident and streamed: what a thread can do at best.
./kernel_speed | tee $OUT/kernel_speed.txt
for p in smollm2-135m-q4_1.pack llama-3.2-1b-q4_1.pack; do
  ./verify_speed $p | tee -a $OUT/verify.txt; ./verify_speed $p --cold | tee -a $OUT/verify.txt
done
