"""Turns the raw JSON of bench/gpu/run.sh into results.json (default) or a
Markdown table (--table). Only what was measured goes in: a missing step
leaves its figure null, never a guess.

Roofline: a decode step must read every weight once (the shape's
decode_bytes_per_token, from the synthetic GGUF's writer), so the best
possible rate is bandwidth / bytes; each figure is given as a fraction of
that. For N sequences decoded round-robin (no batched matmul) each token
is still its own pass over the weights, so the same ceiling applies to
the aggregate rate; a batched engine could exceed it."""
import csv
import json
import os
import statistics
import sys

SHAPES = ["llama-3.1-8b", "llama-3.2-1b", "smollm2-135m"]


def load(raw, name):
    try:
        with open(os.path.join(raw, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def llama(raw, shape):
    runs = load(raw, f"llama-{shape}.json") or []
    # Prefill from an empty cache; decode after the prompt's 128 positions
    # (`-d 128`), where ours decodes. Logs from before 2026-11-27 have no
    # depth: their decode is from an empty cache.
    depth = lambda r: r.get("n_depth", 0)
    pp = [r["avg_ts"] for r in runs if r.get("n_gen") == 0 and r.get("n_prompt") and depth(r) == 0]
    tg = [r["avg_ts"] for r in runs if r.get("n_gen") and depth(r) == 128]
    tg0 = [r["avg_ts"] for r in runs if r.get("n_gen") and depth(r) == 0]
    return {
        "prefill_tokens_per_s": pp[0] if pp else None,
        "decode_tokens_per_s": tg[0] if tg else None,
        "decode_tokens_per_s_empty_cache": tg0[0] if tg0 else None,
        "build_commit": runs[0].get("build_commit") if runs else None,
        "gpu_info": runs[0].get("gpu_info") if runs else None,
    }


def agreement(a, b):
    if not a or not b:
        return None
    n = min(len(a), len(b))
    prefix = next((i for i in range(n) if a[i] != b[i]), n)
    return {"compared": n, "equal_prefix": prefix, "equal_positions": sum(a[i] == b[i] for i in range(n))}


def collect(raw):
    smi = None
    try:
        with open(os.path.join(raw, "nvidia-smi.csv")) as f:
            smi = next(csv.DictReader(f, skipinitialspace=True))
    except (OSError, StopIteration):
        pass
    roof = load(raw, "roofline.json")
    bw = roof["bytes_per_s"] if roof else None
    out = {"gpu": smi, "roofline": roof, "shapes": {}}
    for s in SHAPES:
        synth = load(raw, f"synth-{s}.json")
        ours = load(raw, f"ours-{s}.json")
        quiet = load(raw, f"ours-quiet-{s}.json")
        bpt = synth["decode_bytes_per_token"] if synth else None
        ceiling = bw / bpt if bw and bpt else None
        frac = lambda x: x / ceiling if x and ceiling else None
        r = {"synth": synth, "roofline_tokens_per_s": ceiling}
        if ours:
            runs = ours.get("runs", [])
            dec = med([x["decode_tokens_per_s"] for x in runs])
            r["batch1"] = {
                "decode_tokens_per_s": dec,
                "roofline_fraction": frac(dec),
                "time_to_first_token_s": med([x["time_to_first_token_s"] for x in runs]),
                "prefill_tokens_per_s": med([x["prefill_tokens_per_s"] for x in runs]),
                "cold_time_to_first_token_s": ours.get("cold_time_to_first_token_s"),
                "runs": runs,
            }
            for c in ours.get("concurrent", []):
                cr = c["runs"]
                agg = med([x["aggregate_tokens_per_s"] for x in cr])
                dagg = med([x["decode_aggregate_tokens_per_s"] for x in cr])
                r[f"batch{c['concurrency']}"] = {
                    "gen_tokens": c["gen_tokens"],
                    "aggregate_tokens_per_s": agg,
                    "decode_aggregate_tokens_per_s": dagg,
                    "decode_roofline_fraction": frac(dagg),
                    "mean_time_to_first_token_s": med([x["time_to_first_token_s"] for x in cr]),
                    "max_time_to_first_token_s": med([x["max_time_to_first_token_s"] for x in cr]),
                    "runs": cr,
                }
            r["enqueue_probe"] = ours.get("enqueue_probe")
            r["load"] = ours.get("load")
        if quiet:
            dec = med([x["decode_tokens_per_s"] for x in quiet.get("runs", [])])
            r["batch1_quiet"] = {"decode_tokens_per_s": dec, "roofline_fraction": frac(dec)}
        lc = llama(raw, s)
        lc["decode_roofline_fraction"] = frac(lc["decode_tokens_per_s"])
        r["llama_cpp"] = lc
        b1 = r.get("batch1", {}).get("decode_tokens_per_s")
        r["decode_ratio_ours_to_llama_cpp"] = b1 / lc["decode_tokens_per_s"] if b1 and lc["decode_tokens_per_s"] else None
        out["shapes"][s] = r
    cpu = load(raw, "tokens-cpu-smollm2-135m.json")
    gpu = load(raw, "ours-smollm2-135m.json")
    get = lambda d, k: d.get(k) if d else None
    top = lambda d: (get(d, "enqueue_probe") or {}).get("prompt_logits_top8")
    ct, gt = top(cpu), top(gpu)
    out["greedy_tokens_cpu_vs_gpu"] = {
        "shape": "smollm2-135m",
        "cpu": get(cpu, "tokens"),
        "gpu": get(gpu, "tokens"),
        "agreement": agreement(get(cpu, "tokens"), get(gpu, "tokens")),
        "first_tokens_agreement": agreement(get(cpu, "first_tokens"), get(gpu, "first_tokens")),
        "prompt_logits_top8": {"cpu": ct, "gpu": gt},
        "prompt_logits_top8_same_ids": [a[0] for a in ct] == [b[0] for b in gt] if ct and gt else None,
        "prompt_logits_top8_max_abs_diff": max(abs(a[1] - b[1]) for a, b in zip(ct, gt)) if ct and gt else None,
        "prompt_logits_l2": {"cpu": get(get(cpu, "enqueue_probe"), "prompt_logits_l2"), "gpu": get(get(gpu, "enqueue_probe"), "prompt_logits_l2")},
    }
    return out


def fmt(x, spec=".1f"):
    return "–" if x is None else format(x, spec)


def table(res):
    g = res.get("gpu") or {}
    roof = res.get("roofline") or {}
    print(f"card: {g.get('name')} driver {g.get('driver_version')}; copy bandwidth {fmt(roof.get('bytes_per_s') and roof['bytes_per_s'] / 1e12, '.2f')} TB/s")
    print("| shape | GB/token | roofline tok/s | b1 decode tok/s (frac) | TTFT 128 ms | b8 agg tok/s | b32 agg tok/s | llama.cpp tg tok/s (frac) | ours/llama.cpp | enqueue/step ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s, r in res["shapes"].items():
        b1 = r.get("batch1", {})
        b8 = r.get("batch8", {})
        b32 = r.get("batch32", {})
        lc = r.get("llama_cpp", {})
        p = r.get("enqueue_probe") or {}
        bpt = (r.get("synth") or {}).get("decode_bytes_per_token")
        print(
            f"| {s} | {fmt(bpt and bpt / 1e9, '.3f')} | {fmt(r.get('roofline_tokens_per_s'), '.0f')} "
            f"| {fmt(b1.get('decode_tokens_per_s'))} ({fmt(b1.get('roofline_fraction'), '.1%')}) "
            f"| {fmt(b1.get('time_to_first_token_s') and b1['time_to_first_token_s'] * 1e3, '.1f')} "
            f"| {fmt(b8.get('aggregate_tokens_per_s'))} | {fmt(b32.get('aggregate_tokens_per_s'))} "
            f"| {fmt(lc.get('decode_tokens_per_s'))} ({fmt(lc.get('decode_roofline_fraction'), '.1%')}) "
            f"| {fmt(r.get('decode_ratio_ours_to_llama_cpp'), '.2f')} "
            f"| {fmt(p.get('median_enqueue_s') and p['median_enqueue_s'] * 1e3, '.2f')}/{fmt(p.get('median_step_s') and p['median_step_s'] * 1e3, '.2f')} |"
        )
    t = res["greedy_tokens_cpu_vs_gpu"]
    print("greedy CPU vs GPU:", {k: t[k] for k in ("agreement", "first_tokens_agreement", "prompt_logits_top8_same_ids", "prompt_logits_top8_max_abs_diff", "prompt_logits_l2")})


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        raw = sys.argv[2]
        table(collect(raw))
    else:
        print(json.dumps(collect(sys.argv[1]), indent=1))
