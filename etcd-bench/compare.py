#!/usr/bin/env python3
"""Compares our peer with the better reference peer, row by row, from etcd-bench/v1 result files.

usage: compare.py RESULTS.jsonl [--ours NAME] [--refs go,rs]

For every (case, server mode): medians over rounds of ops/s, client CPU us/op and peak RSS per
peer; then ours / best reference for CPU (lower is better: the reference with the lowest CPU)
and for throughput (higher is better: the reference with the highest ops/s), and the issue's
targets: CPU <= 0.5x on put c1x64, put c8x256, range-s c1x64, range-l c8x256, txn-put c1x64,
watch and lease rows, <= 0.7x on put c1x1; throughput >= 1x everywhere and >= 1.25x on put
c8x256 nofsync; peak RSS < 8 MiB on put c8x256.
"""
import json
import statistics
import sys
from collections import OrderedDict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cpu_target(case):
    if case == "put-c1x1":
        return 0.7
    if case in ("put-c1x64", "put-c8x256", "range-s-c1x64", "range-l-c8x256", "txn-put-c1x64"):
        return 0.5
    if case.startswith("watch-") or case.startswith("lease-"):
        return 0.5
    return None


def main(argv):
    ours = "ours-tokio"
    refs = ["go", "rs"]
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--ours":
            ours = argv[i + 1]
            i += 2
        elif argv[i] == "--refs":
            refs = argv[i + 1].split(",")
            i += 2
        else:
            files.append(argv[i])
            i += 1
    groups = OrderedDict()
    for fn in files:
        with open(fn) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line)
                if r.get("failed"):
                    print(f"failed run: {r}", file=sys.stderr)
                    continue
                groups.setdefault((r["case"], r["server_mode"]), {}).setdefault(r["peer"], []).append(r)
    print("| case | server | best ref ops/s | ours ops/s | ours/best ops | best ref CPU us/op | ours CPU us/op "
          "| ours/best CPU | CPU target | ours RSS MiB | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (case, mode), by_peer in groups.items():
        if ours not in by_peer:
            continue
        stat = {}
        for p, runs in by_peer.items():
            stat[p] = (
                med([r["ops_per_s"] for r in runs]),
                med([r["cpu_us_per_op"] for r in runs]),
                med([r["peak_rss_kb"] / 1024 for r in runs]),
                len(runs),
            )
        present = [p for p in refs if p in stat]
        if not present:
            continue
        best_ops = max(stat[p][0] for p in present)
        best_cpu = min(stat[p][1] for p in present)
        o_ops, o_cpu, o_rss, _ = stat[ours]
        ops_ratio = o_ops / best_ops if best_ops else None
        cpu_ratio = o_cpu / best_cpu if best_cpu else None
        target = cpu_target(case)
        ok = ops_ratio is not None and ops_ratio >= 1.0
        if case == "put-c8x256" and mode == "nofsync":
            ok = ok and ops_ratio >= 1.25
        if target is not None:
            ok = ok and cpu_ratio is not None and cpu_ratio <= target
        if case == "put-c8x256":
            ok = ok and o_rss < 8.0
        print(f"| {case} | {mode} | {best_ops:,.0f} | {o_ops:,.0f} | {ops_ratio:.2f}x | {best_cpu:.2f} | {o_cpu:.2f} "
              f"| {cpu_ratio:.2f}x | {'<= %.1fx' % target if target else '-'} | {o_rss:.1f} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main(sys.argv[1:])
