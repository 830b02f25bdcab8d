"""Simulated auto-balance: the real planner and scheduler (dashboard/balance/core.py) fed a
synthetic per-slot load that drifts over days, one round per simulated minute.

The load (per slot, deterministic for a seed): a tenant size (lognormal) that grows or shrinks
by a slow random walk; a daily wave whose phase moves across the slot space (different tenants
peak at different hours); +-15 % noise per sample; a few hot spots (one slot at 200x, ~15 %
of all ops, for 1-4 hours); and on day 2 at 12:00 an empty group joins. Keys and memory follow
the tenant size.

Compared, on the same load:
  auto        the scheduler, one round a minute (its settings below);
  same-points an operator's `rebalance --load` (one raw sample, 5 % tolerance, no cool-down,
              no budget) run at exactly the rounds where the scheduler acted;
  every-6h    the same on-demand rebalance, run every 6 hours;
  never       nothing moves after the start.
Moves are taken as finished before the next round (the migration machinery's own speed is
bench/migrate_bench.py's subject). Imbalance is measured on the noise-free load: the largest
|deviation| of a group from its target, in % of the target.

    .venv/bin/python bench/autobalance_sim.py [--days 3] [--slots 1024] [--groups 4] [--seed 1]
        [--png bench/autobalance_sim.png]

The plot needs matplotlib (bench only, not a dependency of slotproxy: `pip install
matplotlib`); without it the figures are printed and no PNG is written.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.balance.core import Observation, Scheduler
from dashboard.balance.settings import Settings
from dashboard.model import rebalance as rb

ROUND = 60.0  # seconds between rounds (simulated)
SETTINGS = {"enabled": True, "interval": ROUND, "tolerance": 10, "quiet": 300,
            "smoothing": 120, "cooldown": 1800, "max_slots_per_hour": 1024, "hot_share": 50}


class Load:
    """The synthetic per-slot load at minute m (true values and one noisy sample)."""

    def __init__(self, nslots: int, seed: int, days: int) -> None:
        rnd = random.Random(seed)
        self.rnd = random.Random(seed + 1)
        self.n = nslots
        self.size = [rnd.lognormvariate(0, 0.7) for _ in range(nslots)]
        self.phase = [rnd.uniform(0, 2 * math.pi) * 0.3 + 2 * math.pi * s / nslots
                      for s in range(nslots)]
        minutes = days * 1440
        self.hot = []  # (start minute, end minute, slot, factor)
        for _ in range(days * 3):
            start = rnd.randrange(minutes)
            self.hot.append((start, start + rnd.randrange(60, 240), rnd.randrange(nslots),
                             200.0))

    def step(self, minute: int) -> None:
        for s in range(self.n):  # tenants grow or shrink slowly (a random walk)
            self.size[s] *= math.exp(self.rnd.gauss(0, 0.002))

    def true_ops(self, minute: int) -> list[float]:
        t = 2 * math.pi * minute / 1440
        ops = [self.size[s] * (1 + 0.7 * math.sin(t + self.phase[s])) for s in range(self.n)]
        for start, end, slot, factor in self.hot:
            if start <= minute < end:
                ops[slot] *= factor
        return ops

    def sample(self, ops: list[float]) -> list[float]:
        return [x * self.rnd.uniform(0.85, 1.15) for x in ops]

    def keys(self) -> list[float]:
        return [1000 * x for x in self.size]

    def memory(self) -> list[float]:
        return [1000 * 180 * x for x in self.size]


def imbalance(owner: list[int], weights: dict[int, float], load: list[float]) -> float:
    total = sum(load)
    wsum = sum(weights.values())
    g = dict.fromkeys(weights, 0.0)
    for s, o in enumerate(owner):
        g[o] += load[s]
    return max(abs(g[k] / total - w / wsum) / (w / wsum) * 100 for k, w in weights.items())


@dataclass
class Run:
    name: str
    owner: list[int]
    moved: list[int] = field(default_factory=list)      # slots moved per round
    imb: list[float] = field(default_factory=list)      # true imbalance per round
    last_move: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    undos: int = 0                           # a slot moved back within the cool-down (30 min)

    def apply(self, minute: int, moves: list[tuple[int, int, int]]) -> None:
        for s, src, dst in moves:
            prev = self.last_move.get(s)
            if prev and prev[1] == dst and minute - prev[0] < SETTINGS["cooldown"] / ROUND:
                self.undos += 1
            self.last_move[s] = (minute, src, dst)
            self.owner[s] = dst
        self.moved.append(len(moves))


def combined(load: Load, ops: list[float]) -> list[float]:
    return rb.combine_loads(load.n, {"memory": load.memory(), "keys": load.keys(),
                                     "ops": ops}, {"memory": 1, "keys": 1, "ops": 1})


def on_demand(run: Run, weights: dict[int, float], load: Load, sample: list[float]
              ) -> list[tuple[int, int, int]]:
    return rb.plan_load(run.owner, weights, combined(load, sample), tolerance=0.05).moves


def simulate(days: int, nslots: int, ngroups: int, seed: int) -> dict:
    load = Load(nslots, seed, days)
    per = nslots // ngroups
    start = [min(s // per + 1, ngroups) for s in range(nslots)]
    runs = {k: Run(k, list(start)) for k in ("auto", "same-points", "every-6h", "never")}
    weights = {g: 1.0 for g in range(1, ngroups + 1)}
    sched = Scheduler()
    settings = Settings().update(SETTINGS)
    acted_at: list[int] = []
    join = 1440 + 720 if days > 1 else None
    t0 = time.perf_counter()
    minutes = days * 1440
    for m in range(minutes):
        load.step(m)
        if m == join:
            weights = {**weights, ngroups + 1: 1.0}
        ops = load.true_ops(m)
        sample = load.sample(ops)
        obs = Observation(now=m * ROUND, owner=list(runs["auto"].owner), weights=weights,
                          ops=sample, keys=load.keys(), memory=load.memory())
        d = sched.round(obs, settings)
        if d.moves:
            sched.started(d, m * ROUND, [s for s, _, _ in d.moves])
            sched.ours.clear()  # finished before the next round
            acted_at.append(m)
        runs["auto"].apply(m, d.moves)
        runs["same-points"].apply(m, on_demand(runs["same-points"], weights, load, sample)
                                  if d.moves else [])
        runs["every-6h"].apply(m, on_demand(runs["every-6h"], weights, load, sample)
                               if m % 360 == 0 or m == join else [])
        runs["never"].apply(m, [])
        truth = combined(load, ops)
        for r in runs.values():
            r.imb.append(imbalance(r.owner, weights, truth))
    elapsed = time.perf_counter() - t0
    return {"runs": runs, "acted_at": acted_at, "join": join, "minutes": minutes,
            "elapsed": elapsed, "hist": sched.history}


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summary(res: dict, tolerance: float) -> list[dict]:
    rows = []
    hours = res["minutes"] / 60
    for r in res["runs"].values():
        per_hour = [sum(r.moved[i:i + 60]) for i in range(0, len(r.moved), 60)]
        settled = r.imb[120:]  # after the first two hours
        rows.append({"run": r.name, "slots_moved": sum(r.moved),
                     "per_hour_mean": round(sum(r.moved) / hours, 1),
                     "per_hour_max": max(per_hour), "rounds_moving": sum(1 for x in r.moved
                                                                         if x),
                     "imb_mean": round(sum(settled) / len(settled), 1),
                     "imb_p95": round(pct(settled, 0.95), 1), "imb_max": round(max(settled), 1),
                     "within_tol": round(sum(1 for x in settled if x <= tolerance)
                                         / len(settled) * 100, 1),
                     "undos": r.undos})
    return rows


def table(rows: list[dict]) -> str:
    heads = ["run", "slots_moved", "per_hour_mean", "per_hour_max", "rounds_moving",
             "imb_mean", "imb_p95", "imb_max", "within_tol", "undos"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(str(r[h]) for h in heads) + " |" for r in rows]
    return "\n".join(out)


def plot(res: dict, path: Path, tolerance: float) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = res["runs"]
    hours = [m / 60 for m in range(res["minutes"])]
    fig, (a, b) = plt.subplots(2, 1, figsize=(11, 7), sharex=True,
                               gridspec_kw={"height_ratios": [3, 2]})
    colors = {"auto": "#2563eb", "same-points": "#f59e0b", "every-6h": "#10b981",
              "never": "#9ca3af"}
    for name in ("never", "every-6h", "same-points", "auto"):
        a.plot(hours, runs[name].imb, label=name, color=colors[name],
               lw=1.6 if name == "auto" else 1.0, alpha=1 if name == "auto" else 0.85)
    a.axhline(tolerance, color="#dc2626", ls="--", lw=1, label=f"tolerance {tolerance:g} %")
    if res["join"] is not None:
        for ax in (a, b):
            ax.axvline(res["join"] / 60, color="#6b7280", ls=":", lw=1)
        a.annotate("empty group joins", (res["join"] / 60, a.get_ylim()[1] * 0.9),
                   fontsize=8, color="#374151", xytext=(4, 0), textcoords="offset points")
    a.set_ylabel("imbalance: max |group - target| %")
    a.set_ylim(0, min(100, max(max(runs["never"].imb[120:]), 30) * 1.1))
    a.legend(loc="upper left", fontsize=8, ncol=5)
    a.grid(alpha=0.3)
    a.set_title("auto-balance vs on-demand rebalance, synthetic drifting load "
                f"({len(runs['auto'].owner)} slots, one round a minute)", fontsize=10)
    per_hour = {n: [sum(runs[n].moved[i:i + 60]) for i in range(0, res["minutes"], 60)]
                for n in ("auto", "same-points", "every-6h")}
    xs = [h + 0.5 for h in range(len(per_hour["auto"]))]
    width = 0.3
    b.bar([x - width for x in xs], per_hour["auto"], width, label="auto", color=colors["auto"])
    b.bar(xs, per_hour["same-points"], width, label="same-points",
          color=colors["same-points"])
    b.bar([x + width for x in xs], per_hour["every-6h"], width, label="every-6h",
          color=colors["every-6h"])
    b.set_ylabel("slots moved per hour")
    b.set_xlabel("hours")
    b.legend(loc="upper left", fontsize=8, ncol=3)
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--slots", type=int, default=1024)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--png", default=str(Path(__file__).with_name("autobalance_sim.png")))
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    res = simulate(a.days, a.slots, a.groups, a.seed)
    rows = summary(res, SETTINGS["tolerance"])
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{res['minutes']} rounds ({a.days} days, {a.slots} slots, {a.groups} groups"
              f"{' + 1 joining' if res['join'] else ''}) in {res['elapsed']:.1f}s; the "
              f"scheduler acted in {len(res['acted_at'])} rounds")
        print(table(rows))
    if plot(res, Path(a.png), SETTINGS["tolerance"]):
        print(f"plot: {a.png}")
    else:
        print("matplotlib not installed: no plot (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
