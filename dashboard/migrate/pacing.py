"""The adaptive pace of a MovePass: how many keys the next MIGRATE carries and how long to rest
before it. Sans-IO: the mover feeds it measurements, it answers with numbers.

Two signals, two loops:

* **stall** -- every MIGRATE blocks the single-threaded source (and the target's RESTORE) for
  its whole duration; every client request to either server waits behind it. The measured
  duration of each MIGRATE (the source's own figure) is fitted to `fixed + per_key x keys`
  (exponentially weighted least squares over the recent batches: the fixed part is the round
  trip to the target and, on a busy host, the target's wait for a CPU), and the batch is sized
  so that the stall fits the budget (`target_stall_ms`). The batch moves towards that size like
  an AIMD controller: it shrinks at once (but at most by half per batch: one noisy sample must
  not collapse it), it grows by at most an eighth per full batch. When the fixed part alone
  takes half the budget or more, shrinking the batch would not shorten a stall, only multiply
  them: the keys then get half the budget on top of the fixed part.
* **latency** -- short stalls can still add up when they come back to back (the source never
  drains the requests queued behind one before the next starts, and on a small box the mover's
  own CPU competes with the servers'). A latency figure of the servers the clients use (a PING
  probe on a separate connection to the source between batches, or a figure the proxies
  report), smoothed (EWMA, so one late sample does not stop the mover), is compared with its
  no-migration baseline: above `latency_factor` x baseline -- and more than `latency_slack_ms`
  above it: a PING round trip is ~50 us, and a factor of that alone would react to the
  mover's own scheduling noise, not to anything a client notices -- the mover rests between batches,
  the rest doubling while it stays high (up to `max_pause_ms`) and the batch not growing; once
  it is back under, the rest halves away.

* **what the clients see** -- on a small shared host the clients' latency rises mostly
  because the migration's CPU (the mover's, the source's MIGRATE, the target's RESTORE) delays
  the proxy and the servers, not because one MIGRATE blocks the source: the source's PING on
  the mover's own connection then stays within its slack. So the proxies' own figure -- the
  p99 of the requests they timed per group over a sliding window (proxylat.py) -- feeds one
  more loop per group (the source's and every target's), against the p99 of the window
  before the migration started, with the same rule (above `latency_factor` x baseline and
  more than `client_slack` above it: rest, doubling; below: the rest halves away). And once
  that baseline is known, one MIGRATE may block the source for at most `stall_share` of it
  (a request arriving just as a MIGRATE starts waits for all of it): the stall budget is
  min(`target_stall`, `stall_share` x the clients' baseline p99).
* **is it the migration?** -- the clients' p99 high for `recheck` seconds may be someone
  else's load, which resting does not help: the mover then holds for `hold` seconds and the
  first window inside the hold says what the clients see without it; a group still above its
  bound takes that figure as its baseline for REBASE_TTL seconds (`on_client_latency`).

Every loop only ever makes the mover gentler than the fixed-size mover it replaces, and every
output is clamped to its bounds; the rest is the longest any loop asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DECAY = 0.9  # weight of the previous batches in the stall fit (~the last 10-20 count)
MIN_PAUSE = 0.0005  # s: the first rest after latency went high; below it a rest is dropped
ALPHA = 0.2  # weight of a new PING sample in the smoothed figure
CLIENT_ALPHA = 0.5  # ... of a proxies' window p99 (each already sums hundreds of requests)
REBASE_TTL = 30.0  # s a baseline raised by a check holds before the quiet one applies again


@dataclass(frozen=True, slots=True)
class PaceLimits:
    target_stall: float = 0.0005  # s, budget for one MIGRATE call
    min_batch: int = 10
    max_batch: int = 1000
    latency_factor: float = 1.5   # latency above factor x baseline means back off ...
    latency_slack: float = 0.0002  # ... if it is also this much (s) above the baseline
    max_pause: float = 0.005      # s, longest rest between two batches
    client_slack: float = 0.0001  # s, the proxies' p99 must also be this much above its baseline
    stall_share: float = 1.0      # a MIGRATE's budget: at most this share of the clients'
    #                               baseline p99 (0: target_stall alone)
    recheck: float = 3.0  # s of the clients' latency high before a check (0: never)
    hold: float = 1.5     # s the check rests (longer than the proxies' window + a poll)

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.max_batch:
            raise ValueError("need 1 <= min_batch <= max_batch")
        if (self.target_stall <= 0 or self.latency_factor < 1 or self.max_pause < 0
                or self.latency_slack < 0 or self.client_slack < 0 or self.stall_share < 0
                or self.recheck < 0 or self.hold <= 0):
            raise ValueError("need target_stall > 0, latency_factor >= 1, max_pause >= 0, "
                             "latency_slack >= 0, client_slack >= 0, stall_share >= 0, "
                             "recheck >= 0, hold > 0")


class StallModel:
    """stall = fixed + per_key x keys, fitted by exponentially weighted least squares."""

    __slots__ = ("sn", "snn", "snt", "st", "w")

    def __init__(self) -> None:
        self.w = self.sn = self.st = self.snn = self.snt = 0.0

    def add(self, keys: int, seconds: float) -> None:
        self.w = self.w * DECAY + 1
        self.sn = self.sn * DECAY + keys
        self.st = self.st * DECAY + seconds
        self.snn = self.snn * DECAY + keys * keys
        self.snt = self.snt * DECAY + keys * seconds

    def fit(self) -> tuple[float, float]:
        """(fixed seconds, seconds per key); all per key while the recent sizes are too alike
        to tell the two apart (the cautious reading: a smaller batch is then shorter)."""
        mn, mt = self.sn / self.w, self.st / self.w
        var = self.snn / self.w - mn * mn
        cov = self.snt / self.w - mn * mt
        if var > (0.02 * mn) ** 2 and cov > 0:
            per_key = cov / var
            fixed = min(max(0.0, mt - per_key * mn), mt)
            return fixed, max(per_key, 1e-9)
        return 0.0, max(mt / mn, 1e-9)


class LatencyLoop:
    """One latency figure against its no-migration baseline: high while the smoothed figure is
    above factor x baseline and more than `slack` above it; the rest it asks for doubles while
    high (from MIN_PAUSE, up to the limit) and halves away once it is back under."""

    __slots__ = ("alpha", "baseline", "high", "latency", "origin", "pause", "raised_until")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.baseline: float | None = None  # None: unknown, the loop does nothing
        self.origin: float | None = None  # the baseline as given (before any check raised it)
        self.raised_until = 0.0
        self.latency = 0.0  # EWMA of the samples
        self.high = False  # the last sample left the smoothed figure above the bound
        self.pause = 0.0

    def set_baseline(self, seconds: float | None) -> None:
        self.baseline = seconds if seconds is not None and seconds > 0 else None

    def above(self, seconds: float, factor: float, slack: float,
              base: float | None = None) -> bool:
        base = self.baseline if base is None else base
        return base is not None and seconds > max(base * factor, base + slack)

    def relax(self) -> None:
        """No figure (no client timed) or a fresh start: not high, the rest halves away."""
        self.high = False
        self.pause = self.pause / 2 if self.pause / 2 >= MIN_PAUSE else 0.0

    def sample(self, seconds: float, factor: float, slack: float, max_pause: float) -> None:
        base = self.baseline
        if base is None or seconds < 0:
            return
        a = self.alpha
        self.latency = seconds if not self.latency else (1 - a) * self.latency + a * seconds
        if self.above(self.latency, factor, slack):
            self.high = True
            self.pause = max(MIN_PAUSE, self.pause * 2)
        else:
            self.high = False
            self.pause = self.pause / 2 if self.pause / 2 >= MIN_PAUSE else 0.0
        self.pause = min(self.pause, max_pause)


class PaceController:
    """AIMD on the batch size from measured stalls; a rest from measured latency (the source's
    PING, and the proxies' p99 per group)."""

    __slots__ = ("_asked", "_high_since", "_sign", "batch", "batches", "checks", "clients",
                 "hold_until", "keys", "largest", "limits", "model", "probe", "smallest",
                 "stall_ewma")

    def __init__(self, limits: PaceLimits, start: int | None = None) -> None:
        self.limits = limits
        self.batch = self._clamp(start if start is not None else limits.min_batch)
        self.probe = LatencyLoop(ALPHA)  # the source's PING
        self.clients: dict[str, LatencyLoop] = {}  # group -> the proxies' p99 for it
        self.hold_until = 0.0  # a check: no MIGRATE before this (the feeder's clock)
        self.checks = 0
        self._high_since: float | None = None
        self.stall_ewma = 0.0
        self.model = StallModel()
        self.batches = self.keys = self.largest = 0  # what was sent (the view)
        self.smallest = 0
        self._sign = 1
        self._asked = self.batch

    def size(self) -> int:
        """The size of the next MIGRATE: the batch, dithered by +-1/16 in turn (sizes that all
        look alike would not tell the fit the fixed cost from the per-key cost)."""
        self._sign = -self._sign
        self._asked = self._clamp(self.batch + self._sign * max(1, self.batch // 16))
        return self._asked

    # -- the latency loops' state, as one figure -------------------------------------------
    @property
    def pause(self) -> float:
        """The rest before the next MIGRATE: the longest any latency loop asks for."""
        return max([self.probe.pause, *(c.pause for c in self.clients.values())])

    @property
    def high(self) -> bool:
        """Some latency figure is above its bound (the batch does not grow meanwhile)."""
        return self.probe.high or any(c.high for c in self.clients.values())

    @property
    def baseline(self) -> float | None:
        """The source's PING baseline."""
        return self.probe.baseline

    @baseline.setter
    def baseline(self, seconds: float | None) -> None:
        self.probe.set_baseline(seconds)

    @property
    def latency(self) -> float:
        return self.probe.latency

    def client_baseline(self) -> float | None:
        """The lowest of the groups' no-migration p99 (None: no proxy figure yet)."""
        known = [c.baseline for c in self.clients.values() if c.baseline]
        return min(known) if known else None

    def budget(self) -> float:
        """The stall budget of one MIGRATE: `target_stall`, and at most `stall_share` of the
        clients' baseline p99 once it is known."""
        lim = self.limits
        base = self.client_baseline()
        if base is None or not lim.stall_share:
            return lim.target_stall
        return min(lim.target_stall, lim.stall_share * base)

    def set_limits(self, limits: PaceLimits) -> None:
        """New bounds (the operator changed the settings): what was learnt is clamped to them."""
        self.limits = limits
        self.batch = self._clamp(self.batch)
        for loop in (self.probe, *self.clients.values()):
            loop.pause = min(loop.pause, limits.max_pause)

    def _clamp(self, n: float) -> int:
        return max(self.limits.min_batch, min(self.limits.max_batch, int(n)))

    def on_stall(self, keys: int, seconds: float) -> None:
        """One MIGRATE of `keys` keys took `seconds` (send to reply)."""
        if keys <= 0 or seconds < 0:
            return
        self.batches += 1
        self.keys += keys
        self.largest = max(self.largest, keys)
        self.smallest = min(self.smallest, keys) if self.smallest else keys
        self.stall_ewma = seconds if not self.stall_ewma else 0.8 * self.stall_ewma + 0.2 * seconds
        self.model.add(keys, seconds)
        fixed, per_key = self.model.fit()
        budget = self.budget()
        room = budget - fixed if fixed < budget / 2 else budget / 2
        want = room / per_key
        if want < self.batch:
            self.batch = self._clamp(max(want, self.batch / 2))
        elif not self.high and keys * 4 >= min(self._asked, self.batch) * 3:
            # grow only from a batch that was (nearly) full (a short page proves nothing
            # about a full one) and not while latency is high
            self.batch = self._clamp(min(want, self.batch + max(1, self.batch // 8)))

    def set_baseline(self, seconds: float) -> None:
        """The source's PING latency without a migration (None until known: no PING loop)."""
        self.probe.set_baseline(seconds)

    def on_latency(self, seconds: float) -> None:
        """A PING sample of the source taken while the migration runs."""
        lim = self.limits
        self.probe.sample(seconds, lim.latency_factor, lim.latency_slack, lim.max_pause)

    def rest(self, now: float) -> float:
        """Seconds to wait before the next MIGRATE: the rest, or what is left of a check."""
        return max(self.pause, self.hold_until - now) if self.hold_until else self.pause

    def on_client_latency(self, now: float,
                          figures: dict[str, tuple[float | None, float | None]]) -> None:
        """One reading of the proxies, at `now`: group -> (its p99 over the last window, or
        None when too few requests were timed in it -- no client to protect: that group's
        rest halves away; its no-migration p99, or None: unknown, the group's loop does
        nothing).

        Is it the migration? A p99 high for `recheck` seconds may be someone else's load:
        then resting does not help the clients and only stalls the migration. So the mover
        holds for `hold` seconds and the first window inside the hold is what the clients
        see without it now; a group whose figure is still above its bound gets that figure
        as its baseline for REBASE_TTL seconds (the rests then answer only what the
        migration adds), the others keep theirs."""
        lim = self.limits
        if self.hold_until:
            if now < self.hold_until:
                return  # the window still holds time the mover was moving
            self.hold_until = 0.0
            for group, (seconds, baseline) in figures.items():
                loop = self._client_loop(group, baseline, now)
                if (seconds is not None and loop.origin is not None
                        and loop.above(seconds, lim.latency_factor, lim.client_slack,
                                       loop.origin)):
                    loop.baseline, loop.raised_until = seconds, now + REBASE_TTL
                elif loop.origin is not None:
                    loop.baseline, loop.raised_until = loop.origin, 0.0
                loop.latency = seconds or 0.0
                loop.pause = 0.0
                loop.high = False
            self._high_since = None
            return
        for group, (seconds, baseline) in figures.items():
            loop = self._client_loop(group, baseline, now)
            if seconds is None:
                loop.relax()
            else:
                loop.sample(seconds, lim.latency_factor, lim.client_slack, lim.max_pause)
        if not any(c.high for c in self.clients.values()):
            self._high_since = None
        elif self._high_since is None:
            self._high_since = now
        elif lim.recheck and now - self._high_since >= lim.recheck:
            self.hold_until = now + lim.hold
            self.checks += 1

    def _client_loop(self, group: str, baseline: float | None, now: float) -> LatencyLoop:
        loop = self.clients.get(group)
        if loop is None:
            loop = self.clients[group] = LatencyLoop(CLIENT_ALPHA)
        if loop.origin != baseline:  # a new migration's baseline
            loop.origin = baseline
            loop.set_baseline(baseline)
            loop.raised_until = 0.0
        elif loop.raised_until and now >= loop.raised_until:
            loop.set_baseline(loop.origin)  # a raised baseline expired
            loop.raised_until = 0.0
        return loop

    def view(self) -> dict[str, Any]:
        """The pace now, and the batches sent so far (sizes: smallest, mean, largest)."""
        fixed, per_key = self.model.fit() if self.model.w else (0.0, 0.0)
        return {"batch": self.batch, "pause_ms": round(self.pause * 1000, 3),
                "stall_ms": round(self.stall_ewma * 1000, 3),
                "stall_fixed_ms": round(fixed * 1000, 3),
                "stall_per_key_us": round(per_key * 1e6, 2),
                "baseline_ms": round(self.baseline * 1000, 3) if self.baseline else None,
                "latency_ms": round(self.latency * 1000, 3),
                "budget_ms": round(self.budget() * 1000, 3),
                "clients": {g: {"p99_ms": round(c.latency * 1000, 3),
                                "baseline_ms": round(c.baseline * 1000, 3) if c.baseline else None,
                                "raised": bool(c.raised_until),
                                "pause_ms": round(c.pause * 1000, 3), "high": c.high}
                            for g, c in sorted(self.clients.items())},
                "checks": self.checks,
                "batches": self.batches, "batch_min": self.smallest,
                "batch_mean": round(self.keys / self.batches, 1) if self.batches else None,
                "batch_max": self.largest}
