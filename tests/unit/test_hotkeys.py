"""The hot-key sampler's core (proxy/observe/hotkeys.py): Space-Saving's error bounds against
exact counts, the sampling rate, and the wall-clock-aligned windows."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proxy.config import ConfigError, HotKeysConfig, config_from_dict
from proxy.observe.hotkeys import NEVER, HotKeys, SpaceSaving


def zipf_stream(n: int, universe: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    weights = [1 / (i + 1) ** 1.1 for i in range(universe)]
    return [f"k{i}".encode() for i in rnd.choices(range(universe), weights, k=n)]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("capacity", [8, 32, 100])
def test_space_saving_bounds_hold_for_every_listed_key(seed: int, capacity: int) -> None:
    stream = zipf_stream(20_000, 5_000, seed)
    ss = SpaceSaving(capacity)
    for k in stream:
        ss.offer(k)
    exact = Counter(stream)
    n = len(stream)
    assert ss.total == n
    assert len(ss.counts) == capacity
    assert sum(ss.counts.values()) == n  # every offer adds exactly one to one counter
    for key, count, error, _slot in ss.top():
        assert count - error <= exact[key] <= count, key
        assert error <= n // capacity
    # The smallest count bounds every key left out; every key above n/k is listed.
    floor = ss.floor()
    assert floor <= n / capacity
    listed = set(ss.counts)
    for key, c in exact.items():
        if key not in listed:
            assert c <= floor, (key, c, floor)
        if c > n / capacity:
            assert key in listed


def test_space_saving_exact_when_keys_fit() -> None:
    ss = SpaceSaving(10)
    stream = [b"a"] * 5 + [b"b"] * 3 + [b"c"]
    for k in stream:
        ss.offer(k, slot=7)
    assert ss.top() == [(b"a", 5, 0, 7), (b"b", 3, 0, 7), (b"c", 1, 0, 7)]
    assert ss.floor() == 0  # not full: an unlisted key was never seen


def test_space_saving_min_bucket_tracking() -> None:
    # Replacement inherits the minimum count; the minimum follows the buckets exactly.
    ss = SpaceSaving(2)
    for k in [b"a", b"a", b"b", b"c"]:
        ss.offer(k)
    assert ss.counts == {b"a": 2, b"c": 2} and ss.errors[b"c"] == 1
    assert ss.min_count == 2
    ss.offer(b"a")
    assert ss.min_count == 2
    ss.offer(b"d")  # evicts c (count 2): d = 3, error 2
    assert ss.counts == {b"a": 3, b"d": 3} and ss.errors[b"d"] == 2
    assert ss.min_count == 3
    with pytest.raises(ValueError):
        SpaceSaving(0)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def drive(hk: HotKeys, keys: list[bytes]) -> None:
    """What the request path does: count down, offer the key when it reaches zero."""
    for k in keys:
        hk.countdown -= 1
        if not hk.countdown:
            hk.countdown = hk.sample(k, 0)


def test_sampling_rate_and_hot_key_first() -> None:
    clock = Clock(1000.0)
    hk = HotKeys(HotKeysConfig(sample_rate=10, capacity=16, window=60), clock=clock,
                 rng=random.Random(5))
    rnd = random.Random(9)
    keys = [b"hot" if rnd.random() < 0.3 else f"cold:{rnd.randrange(10_000)}".encode()
            for _ in range(50_000)]
    drive(hk, keys)
    rep = hk.report()
    cur = rep["current"]
    assert 4_000 < cur["samples"] < 6_000  # about 1 in 10
    top = cur["keys"][0]
    assert top["key"] == "hot"
    # Scaled to requests: about 30% of 50000, within the sampling noise.
    assert 12_000 < top["count"] < 18_000
    assert top["count"] == cur["keys"][0]["count"] and top["error"] >= 0


def test_sample_rate_one_counts_everything_and_disabled_never_samples() -> None:
    hk = HotKeys(HotKeysConfig(sample_rate=1, capacity=4), clock=Clock(0.0))
    drive(hk, [b"x"] * 7)
    assert hk.report()["current"]["keys"][0]["count"] == 7
    off = HotKeys.disabled()
    assert off.countdown == NEVER and not off.enabled
    drive(off, [b"x"] * 1000)
    assert off.report()["current"]["samples"] == 0


def test_windows_are_aligned_and_rotate() -> None:
    clock = Clock(1007.0)
    hk = HotKeys(HotKeysConfig(sample_rate=1, capacity=4, window=10), clock=clock)
    assert hk.current.start == 1000.0
    drive(hk, [b"a"] * 3)
    clock.t = 1012.0
    drive(hk, [b"b"])
    rep = hk.report()
    assert rep["current"]["start"] == 1010.0 and rep["current"]["end"] == 1020.0
    assert [k["key"] for k in rep["current"]["keys"]] == ["b"]
    assert rep["previous"]["start"] == 1000.0
    assert rep["previous"]["keys"][0] == {"key": "a", "count": 3, "error": 0, "slot": 0,
                                          "group": None}
    # Reading rotates too: after an idle stretch both windows are the right (empty) ones.
    clock.t = 1055.0
    rep = hk.report()
    assert rep["current"]["start"] == 1050.0 and rep["current"]["samples"] == 0
    assert rep["previous"]["start"] == 1040.0 and rep["previous"]["samples"] == 0


def test_long_keys_are_truncated_and_binary_keys_escaped() -> None:
    hk = HotKeys(HotKeysConfig(sample_rate=1, capacity=4, max_key_bytes=8), clock=Clock(0.0))
    drive(hk, [b"0123456789abc", b"01234567zzz", b"\xff\x00k"])
    keys = {k["key"]: k["count"] for k in hk.report()["current"]["keys"]}
    assert keys == {"01234567": 2, "\\xff\x00k": 1}


def test_config_section() -> None:
    base = {"groups": {1: "127.0.0.1:6379"}}
    cfg = config_from_dict({**base, "hotkeys": {"sample_rate": 5, "capacity": 10,
                                                "window": 5, "enabled": False}})
    assert cfg.hotkeys == HotKeysConfig(enabled=False, sample_rate=5, capacity=10, window=5.0)
    assert config_from_dict(base).hotkeys == HotKeysConfig()
    for bad, msg in [({"sample_rate": 0}, "hotkeys.sample_rate"),
                     ({"window": 0.5}, "hotkeys.window"), ({"bogus": 1}, "hotkeys.bogus"),
                     ({"capacity": 10**6}, "hotkeys.capacity")]:
        with pytest.raises(ConfigError, match=msg):
            config_from_dict({**base, "hotkeys": bad})
