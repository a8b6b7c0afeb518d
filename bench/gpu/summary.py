"""One line of a `cocoon-guest bench` JSON: engine, medians of the batch-1
runs, the enqueue probe and the concurrent rounds."""
import json
import statistics
import sys

d = json.load(open(sys.argv[1]))
runs = d.get("runs") or []
med = lambda k: round(statistics.median(r[k] for r in runs), 2) if runs else None
probe = d.get("enqueue_probe") or {}
conc = [(c["concurrency"], [round(r.get("aggregate_tokens_per_s", 0), 1) for r in c["runs"]]) for c in d.get("concurrent") or []]
print(json.dumps({
    "engine": d.get("load", {}).get("engine"), "decode_tok_s": med("decode_tokens_per_s"),
    "all_decode": [round(r["decode_tokens_per_s"], 1) for r in runs],
    "ttft_s": med("time_to_first_token_s"), "prefill_tok_s": med("prefill_tokens_per_s"),
    "cold_ttft_s": d.get("cold_time_to_first_token_s"),
    "enqueue_s": probe.get("median_enqueue_s"), "step_s": probe.get("median_step_s"),
    "concurrent": conc, "parse_s": d.get("load", {}).get("parse_s"),
}))
