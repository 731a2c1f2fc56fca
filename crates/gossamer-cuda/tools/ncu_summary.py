# Sums an `ncu --csv --metrics gpu__time_duration.sum[,dram__bytes_read.sum]` report per kernel
# and grid: `python3 ncu_summary.py report.csv`. Used to see where a decode step goes.
import csv, collections, sys
lines=open(sys.argv[1]).read().splitlines()
start=[i for i,l in enumerate(lines) if l.startswith('"ID"')][0]
rows=list(csv.reader(lines[start:]))
h=rows[0]
ki=h.index('Kernel Name'); vi=h.index('Metric Value'); ui=h.index('Metric Unit'); gi=h.index('Grid Size')
tot=collections.defaultdict(float); cnt=collections.Counter()
for r in rows[1:]:
    if len(r)<=vi: continue
    v=float(r[vi].replace(',','')); u=r[ui]
    us = v/1000 if u in('nsecond','ns') else v if u in ('usecond','us') else v*1000
    key=(r[ki].split('(')[0], r[gi])
    tot[key]+=us; cnt[key]+=1
T=sum(tot.values())
for k,v in sorted(tot.items(), key=lambda x:-x[1]):
    print(f"{k[0]:18s} {k[1]:14s} n={cnt[k]:3d} mean={v/cnt[k]:8.2f}us {100*v/T:5.1f}%")
print("TOTAL", round(T,1), "us", sum(cnt.values()), "kernels")
