"""Latency histograms: fixed power-of-two bucket arrays, as Redis's own latency histograms.

A histogram is a plain `list[int]` of `NBUCKETS` counts plus a count and a sum kept by the
owner; recording is one `int.bit_length()` and one list index, so the request path never
allocates. Bucket `i` holds the latencies in (`BOUNDS_US[i-1]`, `BOUNDS_US[i]`] µs; the last
bucket is everything over the last bound (Prometheus's `+Inf`). The bounds are Redis's
(`LATENCY HISTOGRAM` reports power-of-two µs buckets): 16 µs … 16.8 s.

Percentiles computed from it are bucket-approximate: the answer is interpolated inside the
bucket the rank falls in, so it is never off by more than that bucket's width (a factor of 2).
"""

from __future__ import annotations

from collections.abc import Sequence

FIRST_POW = 4  # 2**4 = 16 µs: the first bound (a proxied request is rarely faster)
LAST_POW = 24  # 2**24 µs = 16.8 s: the last finite bound
BOUNDS_US: tuple[int, ...] = tuple(1 << p for p in range(FIRST_POW, LAST_POW + 1))
NBUCKETS = len(BOUNDS_US) + 1  # + the overflow (+Inf) bucket
_LAST = NBUCKETS - 1


def new() -> list[int]:
    return [0] * NBUCKETS


def bucket_of(usec: int) -> int:
    """The index of the bucket that holds a latency of `usec` µs (upper bounds inclusive)."""
    if usec <= 0:
        return 0
    k = (usec - 1).bit_length() - FIRST_POW  # smallest p with usec <= 2**p, minus the first
    return 0 if k < 0 else (k if k < _LAST else _LAST)


def cumulative(counts: Sequence[int]) -> list[int]:
    """Running totals (Prometheus's `_bucket{le=...}` values): monotonic by construction."""
    out, total = [], 0
    for c in counts:
        total += c
        out.append(total)
    return out


def percentile(counts: Sequence[int], q: float) -> float:
    """The `q`-th percentile (0-100) in µs, linearly interpolated inside its bucket; 0.0 for
    an empty histogram. The overflow bucket answers its lower bound (it has no upper one)."""
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q / 100.0 * total
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            lower = BOUNDS_US[i - 1] if i > 0 else 0
            if i == _LAST:
                return float(BOUNDS_US[-1])
            upper = BOUNDS_US[i]
            return lower + (upper - lower) * max(rank - seen, 0.0) / c
        seen += c
    return float(BOUNDS_US[-1])


def merge_into(target: list[int], counts: Sequence[int]) -> None:
    for i, c in enumerate(counts):
        target[i] += c
