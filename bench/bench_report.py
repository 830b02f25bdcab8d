#!/usr/bin/env python3
"""Tables and the target summary for bench/peer_bench.sh results (stdlib only).

    bench_report.py table RAW_CSV [--failures FAILURES_CSV]
    bench_report.py summary RAW_CSV --target slotproxy [--baseline nutcracker]

raw.csv columns: round,endpoint,size,pipe,test,rps,p50_ms,p99_ms (one row per
redis-benchmark test result); cpu.csv: round,endpoint,size,pipe,tests,requests,cpu_s (the
endpoint process's CPU time over one redis-benchmark call). Every figure is the median
over rounds; ratios are ratios of medians. The summary geo-means those ratios over the
(size, test) cells of a pipeline class and checks them against the issue's targets.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

TEST_ORDER = ["set", "get", "incr", "lpush", "mset"]
# (label, which cells, minimum ratio vs the baseline)
TARGETS = [
    ("P1  geo-mean vs {b} (all tests, all sizes, -P 1)", "p1", 1.0),
    ("P16 geo-mean vs {b} (all tests, all sizes, -P >1)", "pipe", 1.2),
    ("MSET spanning groups geo-mean vs {b} (all sizes, all -P)", "mset", 1.0),
]

Cell = tuple[int, int, str]  # size, pipe, test


def test_key(t: str) -> tuple[int, str]:
    return (TEST_ORDER.index(t) if t in TEST_ORDER else len(TEST_ORDER), t)


def load(path: str, column: str = "rps") -> tuple[dict[tuple[Cell, str], list[float]],
                                                  list[str]]:
    data: dict[tuple[Cell, str], list[float]] = defaultdict(list)
    endpoints: list[str] = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            ep = r["endpoint"]
            if ep not in endpoints:
                endpoints.append(ep)
            try:
                v = float(r[column])
            except (ValueError, KeyError, TypeError):
                continue
            if not math.isfinite(v):  # "inf" when a run is too short to time
                continue
            data[((int(r["size"]), int(r["pipe"]), r["test"]), ep)].append(v)
    return data, endpoints


def load_cpu(path: str | None) -> dict[tuple[Cell, str], float]:
    """Median CPU microseconds per request of each endpoint process, per cell. A run of several
    tests (SET,GET,INCR in one redis-benchmark call) gives each of them the run's average."""
    if not path or not Path(path).exists():
        return {}
    runs: dict[tuple[Cell, str], list[float]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                reqs, cpu = int(r["requests"]), float(r["cpu_s"])
            except (ValueError, KeyError, TypeError):
                continue
            if reqs <= 0:
                continue
            for t in r["tests"].replace("+", " ").split():
                cell = (int(r["size"]), int(r["pipe"]), t)
                runs[(cell, r["endpoint"])].append(cpu / reqs * 1e6)
    return {k: statistics.median(v) for k, v in runs.items() if v}


def medians(data: dict[tuple[Cell, str], list[float]]) -> dict[tuple[Cell, str], float]:
    return {k: statistics.median(v) for k, v in data.items() if v}


def cells_of(data: dict[tuple[Cell, str], list[float]]) -> list[Cell]:
    return sorted({k[0] for k in data}, key=lambda c: (c[0], c[1], test_key(c[2])))


def cmd_table(args: argparse.Namespace) -> int:
    data, eps = load(args.raw)
    med = medians(data)
    p50 = medians(load(args.raw, "p50_ms")[0])
    p99 = medians(load(args.raw, "p99_ms")[0])
    cpu = load_cpu(args.cpu)
    head = (
        f"{'size':>5} {'P':>3} {'test':<6} {'endpoint':<12} {'median ops/s':>13} "
        f"{'min-max':>21} {'n':>2} {'spread':>6} {'vs direct':>9} {'vs nut':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'cpu us/req':>10}"
    )
    print(head)
    for cell in cells_of(data):
        base_d = med.get((cell, "direct"))
        base_n = med.get((cell, "nutcracker"))
        for ep in eps:
            v = data.get((cell, ep))
            if not v:
                continue
            m = med[(cell, ep)]
            rd = f"{m / base_d:.2f}" if base_d else "-"
            rn = f"{m / base_n:.2f}" if base_n else "-"
            spread = f"{(max(v) - min(v)) / m * 100:.0f}%" if len(v) > 1 else "-"
            mm = f"{min(v):,.0f}-{max(v):,.0f}"
            lat = [f"{x[(cell, ep)]:.3f}" if (cell, ep) in x else "-" for x in (p50, p99)]
            c = f"{cpu[(cell, ep)]:.2f}" if (cell, ep) in cpu else "-"
            print(
                f"{cell[0]:>5} {cell[1]:>3} {cell[2]:<6} {ep:<12} {m:>13,.0f} {mm:>21} "
                f"{len(v):>2} {spread:>6} {rd:>9} {rn:>7} {lat[0]:>7} {lat[1]:>7} {c:>10}"
            )
        print()
    if cpu:
        print("cpu us/req: the endpoint process's utime+stime / requests (median over rounds);"
              " tests run in one redis-benchmark call (set,get,incr) share their average.")
        print()
    if args.failures and Path(args.failures).exists():
        with open(args.failures, newline="") as f:
            fails = list(csv.DictReader(f))
        if fails:
            print(f"FAILED redis-benchmark runs ({len(fails)}; their results are missing/partial):")
            for r in fails:
                print(
                    f"  round {r['round']} {r['endpoint']} d{r['size']} P{r['pipe']} "
                    f"[{r['tests']}] rc={r['rc']}: {r['message']}"
                )
            print()
    return 0


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def cmd_summary(args: argparse.Namespace) -> int:
    data, eps = load(args.raw)
    med = medians(data)
    tgt, base = args.target, args.baseline
    if tgt not in eps:
        print(f"summary: no results for target {tgt!r} (endpoints: {', '.join(eps)})")
        return 1
    ratios: dict[Cell, float] = {}
    for cell in cells_of(data):
        t, b = med.get((cell, tgt)), med.get((cell, base))
        if t and b:
            ratios[cell] = t / b
    vs_direct: dict[Cell, float] = {}
    for cell in cells_of(data):
        t, d = med.get((cell, tgt)), med.get((cell, "direct"))
        if t and d:
            vs_direct[cell] = t / d

    select = {
        "p1": lambda c: c[1] == 1,
        "pipe": lambda c: c[1] > 1,
        "mset": lambda c: c[2] == "mset",
    }
    print(f"===== summary: {tgt} vs {base} (ratios of medians; target >= shown) =====")
    misses = 0
    for label, which, goal in TARGETS:
        sel = {c: r for c, r in ratios.items() if select[which](c)}
        name = label.format(b=base)
        if not sel:
            print(f"  {name:<60} n/a (no cells)")
            continue
        g = geomean(list(sel.values()))
        ok = g >= goal
        misses += not ok
        worst = min(sel, key=lambda c: sel[c])
        print(
            f"  {name:<60} {g:5.2f}x  (>= {goal:.1f})  {'PASS' if ok else 'MISS'}"
            f"   [worst: d{worst[0]} P{worst[1]} {worst[2]} {sel[worst]:.2f}x]"
        )
    # per-cell detail, one line per (size, pipe)
    print(f"  per cell ({tgt}/{base}; in brackets {tgt}/direct):")
    rows: dict[tuple[int, int], list[str]] = defaultdict(list)
    for c in sorted(ratios, key=lambda c: (c[1], c[0], test_key(c[2]))):
        d = vs_direct.get(c)
        rows[(c[0], c[1])].append(f"{c[2]} {ratios[c]:.2f}" + (f" [{d:.2f}]" if d else ""))
    for (size, pipe), items in rows.items():
        print(f"    d{size:<5} P{pipe:<3} " + "  ".join(items))
    if vs_direct:
        print(f"  geo-mean {tgt}/direct: {geomean(list(vs_direct.values())):.2f}x (all cells)")
    return 1 if (misses and args.strict) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="median table with ratios vs direct and nutcracker")
    t.add_argument("raw")
    t.add_argument("--failures")
    t.add_argument("--cpu", help="cpu.csv: CPU per request column")
    s = sub.add_parser("summary", help="target ratios vs the baseline with PASS/MISS")
    s.add_argument("raw")
    s.add_argument("--target", required=True)
    s.add_argument("--baseline", default="nutcracker")
    s.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    return cmd_table(args) if args.cmd == "table" else cmd_summary(args)


if __name__ == "__main__":
    sys.exit(main())
