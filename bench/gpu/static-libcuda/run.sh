#!/bin/sh
# Two parts. Here (the build machine, with the GPU image built):
#   sh bench/gpu/static-libcuda/run.sh prepare
# makes .gpu/static-libcuda/ (ignored by git): the probe built static and
# dynamic, and a root holding only the GPU image's glibc set. Then, with the
# device tool (carry .gpu/static-libcuda):
#   sh bench/gpu/static-libcuda/run.sh probe
# runs both in a chroot with that glibc and the GPU machine's own libcuda.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
out=$repo/.gpu/static-libcuda
case "${1:-}" in
prepare)
  rm -rf "$out" && mkdir -p "$out/root/lib/x86_64-linux-gnu" "$out/root/lib64" "$out/root/dev" "$out/root/proc" "$out/root/sys"
  gcc -O2 -static -o "$out/root/probe-static" "$here/libcuda_probe.c" 2>/dev/null
  gcc -O2 -o "$out/root/probe-dynamic" "$here/libcuda_probe.c"
  # This machine's glibc: the GPU image carries the same release (the
  # build refuses another), so this is the image's set.
  for f in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1; do
    cp "/lib/x86_64-linux-gnu/$f" "$out/root/lib/x86_64-linux-gnu/$f"
  done
  cp "$out/root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$out/root/lib64/"
  echo "prepared $out (glibc $(ldd --version | head -1))" ;;
probe)
  cd "$out"
  lib=$(ldconfig -p | awk '/libcuda.so.1 .*x86-64/{print $NF; exit}')
  echo "libcuda: $lib"; cp -L "$lib" root/lib/x86_64-linux-gnu/libcuda.so.1
  mount --bind /dev root/dev; mount -t proc proc root/proc; mount -t sysfs sys root/sys
  for p in probe-static probe-dynamic; do
    echo "== $p, chroot with the image's glibc"; timeout 60 chroot root "/$p" || echo "exit $?"
  done
  echo "== probe-static with this machine's glibc"; timeout 60 root/probe-static || echo "exit $?"
  umount root/dev root/proc root/sys ;;
*) echo "usage: run.sh prepare|probe" >&2; exit 2 ;;
esac
