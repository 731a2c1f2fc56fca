#!/usr/bin/env python3
"""Sums an Nsight Compute `--csv` report per kernel (and grid): time and share.

    ncu --metrics gpu__time_duration.sum --csv <command> > report.csv
    python3 tools/ncu_summary.py report.csv
"""
import collections
import csv
import sys


def main(path):
    lines = open(path).read().splitlines()
    start = [i for i, l in enumerate(lines) if l.startswith('"ID"')]
    if not start:
        sys.exit(f"{path}: no ncu CSV table found")
    rows = list(csv.reader(lines[start[0]:]))
    head = rows[0]
    ki, mi, vi, ui = (head.index(c) for c in ("Kernel Name", "Metric Name", "Metric Value", "Metric Unit"))
    gi = head.index("Grid Size") if "Grid Size" in head else None
    total = collections.defaultdict(float)
    count = collections.Counter()
    for r in rows[1:]:
        if len(r) <= vi or r[mi] != "gpu__time_duration.sum":
            continue
        v = float(r[vi].replace(",", ""))
        unit = r[ui]
        us = v / 1000 if unit in ("nsecond", "ns") else v if unit in ("usecond", "us") else v * 1000
        key = (r[ki].split("(")[0], r[gi] if gi is not None else "")
        total[key] += us
        count[key] += 1
    grand = sum(total.values()) or 1.0
    for (name, grid), us in sorted(total.items(), key=lambda kv: -kv[1]):
        n = count[(name, grid)]
        print(f"{name:24s} {grid:14s} n={n:4d} mean={us / n:9.2f} us {100 * us / grand:5.1f} %")
    print(f"total {grand:.1f} us over {sum(count.values())} kernels")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
