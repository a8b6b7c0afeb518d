"""Compares the logits that `cocoon-guest bench --logits-out` wrote (the
prompt's, then each probe step's, f32 one after another): the first file
is the reference (the CPU engine), each other one is compared with it.
Prints JSON: per file the largest difference against the largest logit,
how many steps agree on the top token, and whether it equals the
reference to the bit."""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    return list(struct.unpack(f"<{len(data) // 4}f", data))


ref_path, *others = sys.argv[1:]
ref = load(ref_path)
result = {"reference": ref_path, "values": len(ref)}
for path in others:
    got = load(path)
    if len(got) != len(ref):
        result[path] = {"error": f"{len(got)} values, the reference has {len(ref)}"}
        continue
    # Steps: the vocabulary is the length over (1 prompt + steps); infer it
    # from the bench's probe (9 vectors: the prompt and 8 steps).
    steps = 9
    vocab = len(ref) // steps
    top_agree = 0
    for s in range(steps):
        a, b = ref[s * vocab:(s + 1) * vocab], got[s * vocab:(s + 1) * vocab]
        top_agree += max(range(vocab), key=a.__getitem__) == max(range(vocab), key=b.__getitem__)
    diff = max(abs(x - y) for x, y in zip(ref, got))
    scale = max(abs(x) for x in ref)
    result[path] = {
        "max_abs_diff": diff,
        "max_abs_logit": scale,
        "relative": diff / scale if scale else None,
        "top_token_agrees": f"{top_agree}/{steps}",
        "bit_identical": got == ref,
    }
print(json.dumps(result))
