# Sourced by the GPU scripts: the libraries a `--features cuda-candle` build needs
# on a lent machine. cuBLAS, cuRAND and the CUDA runtime (candle's CUDA
# path links them) come from the pip packages of the machine's PyTorch
# (CUDA 13, like the toolkit the binary was built with); the driver's
# libcuda from wherever the image keeps it outside the loader's cache.
LIBDIRS=$(python3 - <<'PY'
import os, nvidia
dirs = set()
for base in nvidia.__path__:
    for root, _, files in os.walk(base):
        if any(f.startswith(("libcublas", "libcudart.so", "libcurand", "libnvrtc")) for f in files):
            dirs.add(root)
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH=$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d $d ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
