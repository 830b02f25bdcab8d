"""Migration benchmark: move a slot range holding >= 1M small keys while redis-benchmark runs
through the proxy against slots that are NOT moving; report keys/s moved and the p50/p99 of
those requests, compared with the same benchmark without a migration.

    python bench/migrate_bench.py [--keys 1000000] [--slots 0-511] [--clients 20]

Layout (1024 slots): group 1 owns 0-767, group 2 owns 768-1023. The keys to move (32-byte
values) are written straight into group 1 in slots --slots; the migration moves those slots to
group 2. redis-benchmark GET/SET runs through one proxy on keys hashed (by tag) into 16 slots of
512-1023, i.e. slots that stay where they are, on both the source and the target group.
Everything runs on this machine (dashboard, proxy, two redis-servers, redis-benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slotcore.keyslot import key_slot  # noqa: E402
from slotcore.ranges import parse_ranges  # noqa: E402
from tests.harness import DashboardProcess, ProxyProcess, RedisServer, until  # noqa: E402

NSLOTS = 1024


def fill(port: int, nkeys: int, slots: set[int]) -> int:
    """Write `nkeys` keys whose slot is in `slots` straight into one redis (redis-cli --pipe)."""
    value = b"v" * 32
    buf = bytearray()
    n = i = 0
    while n < nkeys:
        k = b"mig:%d" % i
        i += 1
        if key_slot(k, NSLOTS) not in slots:
            continue
        buf += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$32\r\n%s\r\n" % (len(k), k, value)
        n += 1
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=bytes(buf), check=True,
                   capture_output=True)
    return n


def tags_in(slots: list[int], count: int) -> list[str]:
    out, i = [], 0
    want = set(slots[:: max(1, len(slots) // count)][:count])
    while want:
        t = f"t{i}"
        if key_slot(t.encode(), NSLOTS) in want:
            want.discard(key_slot(t.encode(), NSLOTS))
            out.append(t)
        i += 1
    return out


def bench_round(port: int, tag: str, n: int, clients: int) -> list[dict[str, float]]:
    """One redis-benchmark run (GET and SET on one tag's keys); parsed --csv rows."""
    out = []
    for cmd in (["SET", f"{{{tag}}}:__rand_int__", "xxxxxxxxxxxxxxxx"],
                ["GET", f"{{{tag}}}:__rand_int__"]):
        res = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(n), "-c",
                              str(clients), "-r", "10000", "--csv", *cmd],
                             capture_output=True, text=True, check=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
        head = [h.strip('"') for h in lines[0].split(",")]
        vals = [v.strip('"') for v in lines[-1].split(",")]
        row = dict(zip(head, vals, strict=False))
        out.append({"cmd": cmd[0], "rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
                    "p99": float(row["p99_latency_ms"]), "max": float(row["max_latency_ms"])})
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_delay(pid: int) -> float:
    """Seconds the process's main thread has waited, runnable, for a CPU so far."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


class CpuMeter:
    """CPU seconds each named process (and redis-benchmark, our children) used over a window,
    and how long each waited for a CPU while runnable (the kernel's schedstat run delay)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = 0.0
        self.start: dict[str, float] = {}
        self.last: dict[str, float] = {}  # CPU seconds over the last window
        self.last_wall = 0.0

    def _now(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out.update({f"{name} wait": run_delay(pid) for name, pid in self.pids.items()})
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["redis-benchmark"] = ru.ru_utime + ru.ru_stime
        return out

    def begin(self) -> None:
        self.t0, self.start = time.monotonic(), self._now()

    def end(self) -> dict[str, float]:
        """Each process's CPU use over the window, and its wait for a CPU, in % of the window."""
        wall = max(time.monotonic() - self.t0, 1e-9)
        now = self._now()
        self.last = {k: now[k] - self.start[k] for k in now}  # seconds, for per_key()
        self.last_wall = wall
        return {k: round(100 * v / wall, 1) for k, v in self.last.items()}

    def per_key(self, keys: int, baseline: dict[str, float] | None = None) -> dict[str, float]:
        """CPU microseconds per key moved of each process over the last window: all of it
        (under the process's name), and what is left after the CPU the same process used in
        the no-migration window at the same rate (`net`: the migration's own share, roughly
        -- the clients' load is not the same in both windows)."""
        keys = max(keys, 1)
        out: dict[str, float] = {}
        for k, v in self.last.items():
            if k.endswith(" wait"):
                continue
            out[k] = round(1e6 * v / keys, 2)
            if baseline is not None and k in baseline:
                out[f"{k} net"] = round(1e6 * (v - baseline[k] / 100 * self.last_wall) / keys, 2)
        return out


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(r["p50"] for r in rows), 3),
            "p99_ms": round(statistics.median(r["p99"] for r in rows), 3),
            "p99_worst_ms": round(max(r["p99"] for r in rows), 3),
            "rps": round(statistics.mean(r["rps"] for r in rows))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--slots", default="0-511", help="range to move (owned by group 1)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=20000, help="per benchmark round")
    ap.add_argument("--max-slots", type=int, default=512, help="max_concurrent_slots")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--keys-per-sec", type=int, default=0, help="throttle (0 = none)")
    ap.add_argument("--fixed", action="store_true",
                    help="fixed batch_size, back to back (adaptive pace off)")
    ap.add_argument("--target-stall-ms", type=float, help="adaptive pace: MIGRATE stall budget")
    ap.add_argument("--min-batch", type=int, help="adaptive pace: smallest batch")
    ap.add_argument("--max-batch", type=int, help="adaptive pace: largest batch")
    ap.add_argument("--latency-factor", type=float, help="adaptive pace: back-off threshold")
    ap.add_argument("--max-pause-ms", type=float, help="adaptive pace: longest rest")
    ap.add_argument("--proxy-poll-ms", type=float,
                    help="adaptive pace: read the proxies' p99 this often (0: PING only)")
    ap.add_argument("--stall-share", type=float,
                    help="adaptive pace: MIGRATE budget as a share of the clients' p99 (0: off)")
    ap.add_argument("--dashboard-nice", type=int, default=10,
                    help="CPU niceness of the dashboard process (it would run on another "
                         "host in production; here it shares the cores with the proxy)")
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="stop measuring after this long (keys/s from the keys moved so far)")
    ap.add_argument("--redis-arg", action="append", default=[],
                    help="extra redis-server option for both servers, e.g. 'activerehashing no'")
    ap.add_argument("--no-load", action="store_true",
                    help="no redis-benchmark during the migration (the CPU per key moved of "
                         "each process alone; no latency figures)")
    ap.add_argument("--out", help="write the JSON result here too")
    args = ap.parse_args()
    moving = parse_ranges(args.slots, NSLOTS)
    if max(moving) > 511:
        ap.error("--slots must lie in 0-511 (512-1023 are the untouched benchmark slots)")

    tmp = Path(tempfile.mkdtemp(prefix="migrate-bench-"))
    extra = ["--lazyfree-lazy-server-del", "yes"]
    for opt in args.redis_arg:
        name, _, value = opt.partition(" ")
        extra += [f"--{name}", value]
    servers = [RedisServer(tmp / f"redis{i}", extra=extra).start() for i in range(2)]
    dash = proxy = None
    try:
        migration = {"max_concurrent_slots": args.max_slots, "batch_size": args.batch_size,
                     "keys_per_sec": args.keys_per_sec, "adaptive": not args.fixed}
        for name in ("target_stall_ms", "min_batch", "max_batch", "latency_factor",
                     "max_pause_ms", "proxy_poll_ms", "stall_share"):
            if getattr(args, name) is not None:
                migration[name] = getattr(args, name)
        dash = DashboardProcess(tmp, slots=NSLOTS, store={"kind": "file", "path": str(tmp / "st")},
                                migration=migration).start()
        if args.dashboard_nice and dash.process is not None:
            os.setpriority(os.PRIO_PROCESS, dash.process.pid, args.dashboard_nice)
        for gid, srv in enumerate(servers, start=1):
            dash.call("POST", "/api/v1/groups", {"id": gid, "master": srv.addr})
        dash.call("POST", "/api/v1/slots/assign", {"assign": [
            {"slots": "0-767", "group": 1}, {"slots": "768-1023", "group": 2}]})
        proxy = ProxyProcess.managed(tmp, "proxy-0", dash.url, slots=NSLOTS).start()
        until(lambda: dash.get("/api/v1/proxies")["proxies"][0]["state"] == "online", 20,
              "proxy online")
        t0 = time.time()
        n = fill(servers[0].port, args.keys, set(moving))
        print(f"loaded {n} keys into slots {args.slots} of group 1 in {time.time() - t0:.1f}s",
              flush=True)
        # alternate the source group's untouched slots (512-767) and the target's (768-1023)
        src, dst = tags_in(list(range(512, 768)), 8), tags_in(list(range(768, 1024)), 8)
        tags = [tg for a, b in zip(src, dst, strict=True) for tg in ((a, 1), (b, 2))]
        meter = CpuMeter({"proxy": proxy.process.pid, "dashboard": dash.process.pid,
                          "redis-source": servers[0].process.pid,
                          "redis-target": servers[1].process.pid})

        def one_round(i: int) -> list[dict[str, float]]:
            tag, gid = tags[i % len(tags)]
            return [{**r, "group": gid} for r in bench_round(proxy.port, tag, args.requests,
                                                              args.clients)]

        base_rows: list[dict[str, float]] = []
        meter.begin()
        for i in range(0 if args.no_load else 4):
            base_rows += one_round(i)
        base_cpu = meter.end()
        baseline = summarize(base_rows) if base_rows else {}
        print(f"baseline (no migration): {baseline} cpu% {base_cpu}", flush=True)

        status, body = dash.call("POST", "/api/v1/migrations", {"slots": args.slots, "to": 2})
        assert status == 201, body
        start = time.time()
        meter.begin()
        rows: list[dict[str, float]] = []
        i = 0
        complete = True
        while True:
            m = dash.get("/api/v1/migrations")
            if not m["slots"]:
                break
            if args.max_seconds and time.time() - start > args.max_seconds:
                complete = False
                break
            if args.no_load:
                time.sleep(0.2)
                continue
            rows += one_round(i)
            i += 1
        mig_cpu = meter.end()
        took = time.time() - start
        m = dash.get("/api/v1/migrations")
        moved = n if complete else m["keys_moved"]
        during = summarize(rows) if rows else {}
        left = int(subprocess.run(["redis-cli", "-p", str(servers[0].port), "dbsize"],
                                  capture_output=True, text=True).stdout.strip())
        moved_target = int(subprocess.run(["redis-cli", "-p", str(servers[1].port), "dbsize"],
                                          capture_output=True, text=True).stdout.strip())
        result = {
            "keys": n, "slots": len(moving), "seconds": round(took, 2), "complete": complete,
            "keys_per_sec": round(moved / took), "slots_per_sec": round(len(moving) / took, 1),
            "keys_moved_by_dashboard": m["keys_moved"],
            "source_keys_left": left, "target_keys": moved_target,
            "baseline": baseline, "during_migration": during,
            "by_group": {f"{name} group {g}": summarize([r for r in rs if r["group"] == g])
                         for name, rs in (("baseline", base_rows), ("during", rows))
                         for g in (1, 2) if any(r["group"] == g for r in rs)},
            "cpu_percent": {"baseline": base_cpu, "during": mig_cpu},
            # CPU microseconds per key moved, per process, over the migration window
            "cpu_us_per_key": meter.per_key(m["keys_moved"],
                                            None if args.no_load else base_cpu),
            "p99_ratio": (round(during["p99_ms"] / baseline["p99_ms"], 2)
                          if during and baseline else None),
            "settings": m["settings"], "dashboard_nice": args.dashboard_nice,
            "pace": m.get("pace"),
            "cpus": os.cpu_count(),
            "target": {"keys_per_sec": 40000, "p99_ratio": 1.5},
        }
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return 0
    finally:
        if proxy is not None:
            proxy.stop()
        if dash is not None:
            dash.stop()
        for s in servers:
            s.stop()


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
