"""The card's memory-bandwidth ceiling, measured: a device-to-device copy
of a 4 GiB buffer (well past the L2) through PyTorch, timed with CUDA
events, median of 20 after 3 warm-ups. Bandwidth counts bytes read plus
bytes written, as METHOD.md of the device tool says. Prints JSON."""
import json
import statistics

import torch

N_BYTES = 4 << 30
src = torch.randint(0, 255, (N_BYTES,), dtype=torch.uint8, device="cuda")
dst = torch.empty_like(src)
for _ in range(3):
    dst.copy_(src)
torch.cuda.synchronize()
times = []
for _ in range(20):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    dst.copy_(src)
    b.record()
    b.synchronize()
    times.append(a.elapsed_time(b) / 1e3)
assert torch.equal(dst[:1 << 20], src[:1 << 20])
t = statistics.median(times)
print(json.dumps({
    "method": "torch device-to-device copy, 4 GiB, median of 20, read+write bytes",
    "bytes_per_s": 2 * N_BYTES / t,
    "median_s": t,
    "min_s": min(times),
    "device": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
}))
