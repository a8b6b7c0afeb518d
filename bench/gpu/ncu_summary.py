"""Sums `ncu --csv --metrics gpu__time_duration.sum` rows per kernel name:
where one decode step's GPU time goes."""
import collections
import csv
import sys

rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
per = collections.defaultdict(lambda: [0, 0.0])
order = []
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"].split("(")[0]
    unit = r.get("Metric Unit", "ns")
    v = float(r["Metric Value"].replace(",", ""))
    v *= {"ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(unit, 1e-3)
    if name not in per:
        order.append(name)
    per[name][0] += 1
    per[name][1] += v
total = sum(t for _, t in per.values())
print(f"kernels: {sum(n for n, _ in per.values())}, first {rows[0]['Kernel Name'].split('(')[0] if rows else None}, "
      f"last {rows[-1]['Kernel Name'].split('(')[0] if rows else None}, GPU time {total:.1f} us")
for name in sorted(per, key=lambda k: -per[k][1]):
    n, t = per[name]
    print(f"  {name:20s} {n:4d} launches {t:9.1f} us ({100 * t / total:4.1f} %), {t / n:7.2f} us each")
